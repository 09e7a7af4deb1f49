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

/// 2:4 magnitude selection over `groups` consecutive groups of four 16-bit floats (BF16 or
/// F16 bits): in each group the two elements of largest magnitude (bits without the sign)
/// stay, ties going to the lower index. Writes, where not NULL:
/// - `mask`: one bit per element, set where kept, least significant bit first
///   ((groups + 1) / 2 bytes; in a last half byte the high bits are zero);
/// - `values`: the two kept elements of each group, in order (2 × groups values);
/// - `dense`: the pruned elements, zero where dropped (4 × groups values).
/// Returns how many kept elements have zero magnitude, so callers that treat zeros apart
/// can tell when to look closer. AVX2 where the CPU has it (checked once), else portable.
size_t pare_select_2of4_u16(const uint16_t *src, size_t groups, uint8_t *mask, uint16_t *values, uint16_t *dense);

/// The portable version, whatever the CPU: for tests that compare the two paths.
size_t pare_select_2of4_u16_portable(const uint16_t *src, size_t groups, uint8_t *mask, uint16_t *values, uint16_t *dense);

#endif
