#include "CKernels.h"
#include <pthread.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

// Which two of four 16-bit floats a 2:4 magnitude pruning keeps: element i stays when
// fewer than two others outrank it, j outranking i when its magnitude (bits without the
// sign) is larger, or equal and j comes first. The same rule as NMSparsity's table.
static inline unsigned kept_of_group(const uint16_t *g) {
    unsigned kept = 0;
    for (int i = 0; i < 4; i++) {
        unsigned mi = g[i] & 0x7FFFu, outranked = 0;
        for (int j = 0; j < 4; j++) {
            unsigned mj = g[j] & 0x7FFFu;
            outranked += j != i && (mj > mi || (mj == mi && j < i));
        }
        if (outranked < 2) kept |= 1u << i;
    }
    return kept;
}

// Groups [first, groups) one at a time; `mask` and `values` point at the row's start.
static size_t portable_from(const uint16_t *src, size_t first, size_t groups, uint8_t *mask, uint16_t *values, uint16_t *dense) {
    size_t zeros = 0;
    for (size_t g = first; g < groups; g++) {
        const uint16_t *p = src + 4 * g;
        unsigned kept = kept_of_group(p);
        unsigned k = 0;
        for (int i = 0; i < 4; i++) {
            if (dense) dense[4 * g + i] = (kept >> i & 1) ? p[i] : 0;
            if (!(kept >> i & 1)) continue;
            if (values) values[2 * g + k] = p[i];
            zeros += (p[i] & 0x7FFFu) == 0;
            k++;
        }
        if (mask) {
            if (g % 2 == 0) mask[g / 2] = (uint8_t)kept;
            else mask[g / 2] |= (uint8_t)(kept << 4);
        }
    }
    return zeros;
}

size_t pare_select_2of4_u16_portable(const uint16_t *src, size_t groups, uint8_t *mask, uint16_t *values, uint16_t *dense) {
    return portable_from(src, 0, groups, mask, values, dense);
}

#if defined(__x86_64__)
// Byte offsets, within a 128-bit lane, of the two kept elements of a group (by its kept
// bits), for pshufb: four bytes, the low and high byte of each element.
static uint32_t compaction[16];

static void build_compaction(void) {
    for (unsigned kept = 0; kept < 16; kept++) {
        uint8_t bytes[4] = {0x80, 0x80, 0x80, 0x80};
        unsigned k = 0;
        for (unsigned i = 0; i < 4 && k < 2; i++) {
            if (!(kept >> i & 1)) continue;
            bytes[2 * k] = (uint8_t)(2 * i);
            bytes[2 * k + 1] = (uint8_t)(2 * i + 1);
            k++;
        }
        memcpy(&compaction[kept], bytes, 4);
    }
}

// Sixteen elements (four groups) per step. Each element counts the others of its group
// that outrank it, comparing with the group rotated by one, two and three places.
__attribute__((target("avx2")))
static size_t avx2(const uint16_t *src, size_t groups, uint8_t *mask, uint16_t *values, uint16_t *dense) {
    const __m256i magnitude = _mm256_set1_epi16(0x7FFF);
    const __m256i minusTwo = _mm256_set1_epi16(-2);
    const __m256i zero = _mm256_setzero_si256();
    // Lanes (position in the group) where the rotated partner comes first: it wins ties.
    const __m256i ties1 = _mm256_setr_epi16(0, 0, 0, -1, 0, 0, 0, -1, 0, 0, 0, -1, 0, 0, 0, -1);
    const __m256i ties2 = _mm256_setr_epi16(0, 0, -1, -1, 0, 0, -1, -1, 0, 0, -1, -1, 0, 0, -1, -1);
    const __m256i ties3 = _mm256_setr_epi16(0, -1, -1, -1, 0, -1, -1, -1, 0, -1, -1, -1, 0, -1, -1, -1);
    size_t zeros = 0, g = 0;
    for (; g + 4 <= groups; g += 4) {
        __m256i w = _mm256_loadu_si256((const __m256i *)(src + 4 * g));
        __m256i m = _mm256_and_si256(w, magnitude);
#define ROTATE(x, imm) _mm256_shufflehi_epi16(_mm256_shufflelo_epi16(x, imm), imm)
#define OUTRANKS(r, ties) _mm256_or_si256(_mm256_andnot_si256(ties, _mm256_cmpgt_epi16(r, m)), \
                                          _mm256_andnot_si256(_mm256_cmpgt_epi16(m, r), ties))
        __m256i r1 = ROTATE(m, _MM_SHUFFLE(0, 3, 2, 1));
        __m256i r2 = ROTATE(m, _MM_SHUFFLE(1, 0, 3, 2));
        __m256i r3 = ROTATE(m, _MM_SHUFFLE(2, 1, 0, 3));
        // Each comparison is 0 or -1: the sum is minus the number that outrank.
        __m256i sum = _mm256_add_epi16(_mm256_add_epi16(OUTRANKS(r1, ties1), OUTRANKS(r2, ties2)), OUTRANKS(r3, ties3));
#undef OUTRANKS
#undef ROTATE
        __m256i kept = _mm256_cmpgt_epi16(sum, minusTwo);
        __m256i keptZero = _mm256_and_si256(kept, _mm256_cmpeq_epi16(m, zero));
        // One byte per element (lanes 0-7 then 8-15 after the in-lane pack), then bits.
        __m256i packed = _mm256_packs_epi16(kept, keptZero);
        uint32_t bits = (uint32_t)_mm256_movemask_epi8(packed);
        unsigned keptBits = (bits & 0xFF) | ((bits >> 8) & 0xFF00);
        zeros += (size_t)__builtin_popcount(bits & 0xFF00FF00u);
        if (mask) {
            mask[g / 2] = (uint8_t)keptBits;
            mask[g / 2 + 1] = (uint8_t)(keptBits >> 8);
        }
        if (dense) _mm256_storeu_si256((__m256i *)(dense + 4 * g), _mm256_and_si256(w, kept));
        if (values) {
            uint64_t lo = compaction[keptBits & 0xF] | ((uint64_t)(compaction[keptBits >> 4 & 0xF] + 0x08080808u) << 32);
            uint64_t hi = compaction[keptBits >> 8 & 0xF] | ((uint64_t)(compaction[keptBits >> 12] + 0x08080808u) << 32);
            __m256i control = _mm256_setr_epi64x((long long)lo, 0, (long long)hi, 0);
            __m256i compacted = _mm256_shuffle_epi8(w, control);
            _mm_storel_epi64((__m128i *)(values + 2 * g), _mm256_castsi256_si128(compacted));
            _mm_storel_epi64((__m128i *)(values + 2 * g + 4), _mm256_extracti128_si256(compacted, 1));
        }
    }
    return zeros + portable_from(src, g, groups, mask, values, dense);
}
#endif

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int has_avx2 = 0;

// Once, whichever of the threads pruning rows in parallel gets here first.
static void setup(void) {
#if defined(__x86_64__)
    build_compaction();
    __builtin_cpu_init();
    has_avx2 = __builtin_cpu_supports("avx2");
#endif
}

static void init(void) { pthread_once(&once, setup); }

size_t pare_select_2of4_u16(const uint16_t *src, size_t groups, uint8_t *mask, uint16_t *values, uint16_t *dense) {
    init();
#if defined(__x86_64__)
    if (has_avx2) return avx2(src, groups, mask, values, dense);
#endif
    return portable_from(src, 0, groups, mask, values, dense);
}
