/* eddy/export.h: EDDY_API marks what libeddy exports (everything else in the shared library is hidden). */
#ifndef EDDY_EXPORT_H
#define EDDY_EXPORT_H

#if defined(__GNUC__)
#define EDDY_API __attribute__((visibility("default")))
#else
#define EDDY_API
#endif

#endif
