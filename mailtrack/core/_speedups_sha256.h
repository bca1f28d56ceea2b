/* SHA-256 for mailtrack.core._speedups' click signer (included by _speedups.c only).
 *
 * Where setup.py found OpenSSL's headers and libcrypto (the library CPython's
 * own hashlib uses), MAILTRACK_OPENSSL is defined and OpenSSL's SHA-256 runs
 * (with the CPU's SHA instructions where it has them). Otherwise this file's
 * portable implementation runs: FIPS 180-4, section 6.2, written for clarity
 * rather than speed. Both are checked against the FIPS 180-4 / NIST test
 * vectors and against hashlib (tests/unit/core/test_speedups_signing.py).
 *
 * Only what HMAC needs: a context that can be copied by value (the key's
 * inner and outer pads are hashed once per signer; each token copies them),
 * update, and final.
 */

#ifdef MAILTRACK_OPENSSL
#define OPENSSL_SUPPRESS_DEPRECATED 1 /* the SHA256_* functions: deprecated in 3.0, kept, and the fastest API */
#include <openssl/sha.h>

typedef SHA256_CTX mt_sha256;
#define MT_SHA256_BACKEND "openssl"

static void
mt_sha256_init(mt_sha256 *ctx)
{
    SHA256_Init(ctx);
}

static void
mt_sha256_update(mt_sha256 *ctx, const unsigned char *data, size_t len)
{
    SHA256_Update(ctx, data, len);
}

static void
mt_sha256_final(mt_sha256 *ctx, unsigned char out[32])
{
    SHA256_Final(out, ctx);
}

#else
#include <stdint.h>

#define MT_SHA256_BACKEND "portable"

typedef struct {
    uint32_t h[8];
    uint64_t length; /* bytes hashed so far */
    unsigned char block[64];
    size_t used; /* bytes waiting in block */
} mt_sha256;

static const uint32_t MT_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define MT_ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void
mt_sha256_block(uint32_t h[8], const unsigned char *p)
{
    uint32_t w[64], a, b, c, d, e, f, g, k, t1, t2;
    int i;
    for (i = 0; i < 16; i++) {
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    }
    for (i = 16; i < 64; i++) {
        uint32_t s0 = MT_ROTR(w[i - 15], 7) ^ MT_ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = MT_ROTR(w[i - 2], 17) ^ MT_ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (i = 0; i < 64; i++) {
        t1 = k + (MT_ROTR(e, 6) ^ MT_ROTR(e, 11) ^ MT_ROTR(e, 25)) + ((e & f) ^ (~e & g)) + MT_K[i] + w[i];
        t2 = (MT_ROTR(a, 2) ^ MT_ROTR(a, 13) ^ MT_ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

static void
mt_sha256_init(mt_sha256 *ctx)
{
    static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(ctx->h, H0, sizeof(H0));
    ctx->length = 0;
    ctx->used = 0;
}

static void
mt_sha256_update(mt_sha256 *ctx, const unsigned char *data, size_t len)
{
    ctx->length += len;
    if (ctx->used) {
        size_t take = 64 - ctx->used < len ? 64 - ctx->used : len;
        memcpy(ctx->block + ctx->used, data, take);
        ctx->used += take, data += take, len -= take;
        if (ctx->used < 64) {
            return;
        }
        mt_sha256_block(ctx->h, ctx->block);
        ctx->used = 0;
    }
    for (; len >= 64; data += 64, len -= 64) {
        mt_sha256_block(ctx->h, data);
    }
    memcpy(ctx->block, data, len);
    ctx->used = len;
}

static void
mt_sha256_final(mt_sha256 *ctx, unsigned char out[32])
{
    uint64_t bits = ctx->length * 8;
    int i;
    ctx->block[ctx->used++] = 0x80;
    if (ctx->used > 56) {
        memset(ctx->block + ctx->used, 0, 64 - ctx->used);
        mt_sha256_block(ctx->h, ctx->block);
        ctx->used = 0;
    }
    memset(ctx->block + ctx->used, 0, 56 - ctx->used);
    for (i = 0; i < 8; i++) {
        ctx->block[56 + i] = (unsigned char)(bits >> (56 - 8 * i));
    }
    mt_sha256_block(ctx->h, ctx->block);
    for (i = 0; i < 8; i++) {
        out[4 * i] = (unsigned char)(ctx->h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(ctx->h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(ctx->h[i] >> 8);
        out[4 * i + 3] = (unsigned char)ctx->h[i];
    }
}
#endif
