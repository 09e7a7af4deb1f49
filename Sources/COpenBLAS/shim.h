// OpenBLAS's CBLAS interface (Debian: libopenblas-dev; pkg-config openblas), plus its
// thread-count controls, which are declared in the same header.
#include <cblas.h>
