/* Export control: halo builds with -fvisibility=hidden and exports exactly the
 * functions marked HALO_API. Internal cross-file names carry a halo__ prefix. */
#ifndef HALO_API_H
#define HALO_API_H

#if defined(__GNUC__)
#define HALO_API __attribute__((visibility("default")))
#else
#define HALO_API
#endif

#endif
