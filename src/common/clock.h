/* clock: wall-clock and monotonic time in milliseconds. */
#ifndef EDDY_COMMON_CLOCK_H
#define EDDY_COMMON_CLOCK_H

#include <stdint.h>

int64_t clock_now_ms(void);       /* wall clock, epoch milliseconds */
int64_t clock_monotonic_ms(void); /* monotonic, arbitrary origin */

#endif
