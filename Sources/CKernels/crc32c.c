#include "CKernels.h"
#include <pthread.h>
#include <string.h>

// Reflected Castagnoli polynomial.
#define POLY 0x82F63B78u

static uint32_t table[8][256];

static void build_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        for (int t = 1; t < 8; t++) table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xFF];
    }
}

static uint32_t portable(uint32_t crc, const unsigned char *p, size_t n) {
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        // Little-endian hosts only (x86_64, aarch64), as the rest of pare assumes.
        uint32_t lo = (uint32_t)word ^ crc, hi = (uint32_t)(word >> 32);
        crc = table[7][lo & 0xFF] ^ table[6][(lo >> 8) & 0xFF] ^ table[5][(lo >> 16) & 0xFF] ^ table[4][lo >> 24]
            ^ table[3][hi & 0xFF] ^ table[2][(hi >> 8) & 0xFF] ^ table[1][(hi >> 16) & 0xFF] ^ table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xFF];
    return crc;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int has_sse42 = 0;

// Once, whichever of the threads checking chunks in parallel gets here first.
static void setup(void) {
    build_table();
#if defined(__x86_64__)
    __builtin_cpu_init();
    has_sse42 = __builtin_cpu_supports("sse4.2");
#endif
}

static void init(void) { pthread_once(&once, setup); }

#if defined(__x86_64__)
// One stream of 8-byte steps: about 8 bytes per 3 cycles, far above what zstd needs.
__attribute__((target("sse4.2")))
static uint32_t hardware(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = crc;
    while (n && ((uintptr_t)p & 7)) {
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
        n--;
    }
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = __builtin_ia32_crc32di(c, word);
        p += 8;
        n -= 8;
    }
    while (n--) c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    return (uint32_t)c;
}
#endif

uint32_t pare_crc32c(uint32_t crc, const void *data, size_t length) {
    init();
    crc = ~crc;
#if defined(__x86_64__)
    if (has_sse42) return ~hardware(crc, (const unsigned char *)data, length);
#endif
    return ~portable(crc, (const unsigned char *)data, length);
}

uint32_t pare_crc32c_portable(uint32_t crc, const void *data, size_t length) {
    init();
    return ~portable(~crc, (const unsigned char *)data, length);
}

// Combining CRCs: the CRC of A ++ B from crc(A), crc(B) and len(B), by applying len(B)
// zero bytes' worth of the CRC's linear map to crc(A) (square-and-multiply over GF(2)
// 32x32 matrices, as zlib's crc32_combine does for its polynomial).
static uint32_t gf2_times(const uint32_t *matrix, uint32_t vector) {
    uint32_t sum = 0;
    while (vector) {
        if (vector & 1) sum ^= *matrix;
        vector >>= 1;
        matrix++;
    }
    return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *matrix) {
    for (int n = 0; n < 32; n++) square[n] = gf2_times(matrix, matrix[n]);
}

uint32_t pare_crc32c_combine(uint32_t crc1, uint32_t crc2, size_t length2) {
    if (length2 == 0) return crc1;
    uint32_t even[32], odd[32];
    // The operator for one zero bit.
    odd[0] = POLY;
    uint32_t row = 1;
    for (int n = 1; n < 32; n++) {
        odd[n] = row;
        row <<= 1;
    }
    gf2_square(even, odd);  // two zero bits
    gf2_square(odd, even);  // four zero bits
    do {
        gf2_square(even, odd);
        if (length2 & 1) crc1 = gf2_times(even, crc1);
        length2 >>= 1;
        if (length2 == 0) break;
        gf2_square(odd, even);
        if (length2 & 1) crc1 = gf2_times(odd, crc1);
        length2 >>= 1;
    } while (length2 != 0);
    return crc1 ^ crc2;
}
