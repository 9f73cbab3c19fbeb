/* clock: wall-clock and monotonic time in milliseconds (and monotonic microseconds, for latencies). */
#ifndef EDDY_COMMON_CLOCK_H
#define EDDY_COMMON_CLOCK_H

#include <stdint.h>

int64_t clock_now_ms(void);       /* wall clock, epoch milliseconds */
int64_t clock_monotonic_ms(void); /* monotonic, arbitrary origin */
int64_t clock_monotonic_us(void); /* monotonic microseconds, arbitrary origin */

#endif
