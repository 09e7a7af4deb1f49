#ifndef PARE_CKERNELS_H
#define PARE_CKERNELS_H

#include <stddef.h>
#include <stdint.h>

/// Continues a CRC-32C (Castagnoli) over `length` bytes. Start with `crc = 0`; the
/// pre- and post-inversion are done inside, so calls chain: crc(a ++ b) =
/// pare_crc32c(pare_crc32c(0, a), b). Uses the SSE4.2 CRC32 instruction where the CPU has
/// it (checked once at run time), a slicing-by-8 table otherwise.
uint32_t pare_crc32c(uint32_t crc, const void *data, size_t length);

/// The CRC-32C of A ++ B from crc(A), crc(B) and the length of B: lets chunks be
/// checksummed in parallel and joined into the whole tensor's CRC.
uint32_t pare_crc32c_combine(uint32_t crc1, uint32_t crc2, size_t length2);

/// The table version, whatever the CPU: for tests that compare the two paths.
uint32_t pare_crc32c_portable(uint32_t crc, const void *data, size_t length);

#endif
