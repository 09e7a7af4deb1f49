// libzstd from the system (Debian: libzstd-dev), for the .pare format's compressed streams.
#include <zstd.h>
#include <zstd_errors.h>
