/* ClickSigner: the compiled twin of TokenCodec's per-link click signer (included by _speedups.c only).
 *
 * mailtrack.core.tokens.TokenCodec._signer builds, for one message, a Python
 * function sign_click(link_index, url) that returns
 *
 *     b64url(head + "," + str(link_index) + "," + json_string(url) + tail) + stamp
 *     + "." + b64url(HMAC-SHA256(key, that)[:size])
 *
 * (itsdangerous' TimestampSigner format, unpadded URL-safe base64, json_string
 * as json.encoder.encode_basestring writes it, then UTF-8). A ClickSigner is
 * built from the same parts (head, tail and stamp as UTF-8 bytes, the derived
 * key, the signature size) and returns the same str for every input: the
 * differential tests sign with both. The key's inner and outer HMAC pads are
 * hashed once, here; each token copies the two states.
 */

#include "_speedups_sha256.h"

/* Opaque tokens (mailtrack.core.opaque): ClickSigner(..., sealed=True) seals the same payload with AES-256-SIV
 * (RFC 5297) instead: the token is b64url(V || C) of the plaintext P = stamp + payload, where stamp is the opaque
 * format's header byte and issue time, and with K = K1 || K2 (32 bytes each) and no associated data (as the pure
 * path's cryptography.AESSIV.encrypt(P, None) does):
 *
 *     D = AES-CMAC(K1, 0^128)                               (once per signer)
 *     T = P xorend D                    if len(P) >= 16,   else dbl(D) xor pad(P)
 *     V = AES-CMAC(K1, T)                                   (the synthetic IV, which is the tag)
 *     C = AES-CTR(K2, counter V with bits 63 and 31 cleared, P)
 *
 * The AES is OpenSSL's (EVP aes-256-cbc for CMAC's chaining, aes-256-ecb for CTR's keystream; AES-NI where the CPU
 * has it), keyed once per signer, and neither context is set up again per token: re-initialising an EVP context
 * (even for a new IV) was a fifth of a token's cost. CBC's chaining value is carried over instead (the next
 * token's first block is XORed with the last one's final ciphertext block, which is what starting again from a
 * zero IV computes) and CTR's counter blocks are encrypted in batches. Only S2V's, CMAC's and CTR's block
 * bookkeeping (RFC 5297 sections 2.4 and 2.5, RFC 4493) is written here, because
 * OpenSSL's own "AES-256-SIV" EVP cipher allows one operation per key setup and that setup (a MAC fetched, two
 * ciphers keyed) cost 8 us a token where this costs well under one. The differential tests check every token
 * against cryptography's AESSIV. Without OpenSSL (the portable build) SIV_AVAILABLE is 0 and the pure sealer runs. */
#if defined(MAILTRACK_OPENSSL)
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#define MT_SIV 1
#endif

#define MT_SIV_KEY 64 /* AES-256-SIV: K1 for S2V's CMAC, K2 for CTR */
#define MT_SIV_TAG 16

#ifdef MT_SIV
/* SivKey: one AES-256-SIV key, keyed once (a codec keeps one per purpose and key, for every message it signs). Its
 * contexts are reused by each operation, which runs whole under the GIL (nothing here releases it). */
typedef struct {
    PyObject_HEAD
    EVP_CIPHER_CTX *cbc; /* AES-256-CBC under K1 (CMAC's chaining) */
    EVP_CIPHER_CTX *ctr; /* AES-256-ECB under K2: CTR's keystream, from counter blocks */
    unsigned char sub1[16], sub2[16], d[16]; /* CMAC's subkeys under K1; D = AES-CMAC(K1, 0^128) */
    unsigned char chain[16]; /* cbc's chaining value (its last ciphertext block), when chained */
    int chained; /* 1 when chain holds cbc's chaining value; 0 after setup or a failure: cbc is re-initialised */
} SivKey;
#endif

typedef struct {
    PyObject_HEAD
    mt_sha256 inner, outer; /* SHA-256 states after the key's ipad and opad blocks */
    PyObject *head, *tail, *stamp; /* bytes */
    int size;                      /* signature bytes kept: 10..32 */
#ifdef MT_SIV
    SivKey *siv; /* sealed mode: the purpose's key (shared with every signer of its codec), NULL when signing */
#endif
} ClickSigner;

/* Whether this build seals opaque tokens (built with OpenSSL). */
static int
siv_available(void)
{
#ifdef MT_SIV
    return 1;
#else
    return 0;
#endif
}

#ifdef MT_SIV
/* dbl() of RFC 5297 (and RFC 4493's subkey step): x times two in GF(2^128), in place. */
static void
siv_dbl(unsigned char x[16])
{
    unsigned char carry = (unsigned char)(x[0] >> 7);
    int i;
    for (i = 0; i < 15; i++) {
        x[i] = (unsigned char)(x[i] << 1 | x[i + 1] >> 7);
    }
    x[15] = (unsigned char)(x[15] << 1 ^ (carry ? 0x87 : 0));
}

/* AES-256-CBC under K1 with a zero IV over data[0:len] (a multiple of 16, in place; len may be 0), then over the
 * 16-byte last (in place): last is then the CBC-MAC. cbc is not set up again for the zero IV: its chaining value
 * from the last chain (kept in self->chain) is XORed into the first block instead, which gives what a zero IV gives.
 * 0 on success, -1 if OpenSSL failed (the next chain then starts cbc afresh). */
static int
siv_chain(SivKey *self, unsigned char *data, Py_ssize_t len, unsigned char last[16])
{
    static const unsigned char zero[16];
    unsigned char *first = len > 0 ? data : last;
    int written, i;
    if (!self->chained) {
        if (EVP_EncryptInit_ex(self->cbc, NULL, NULL, NULL, zero) != 1) {
            return -1;
        }
    }
    else {
        for (i = 0; i < 16; i++) {
            first[i] ^= self->chain[i];
        }
        self->chained = 0; /* until this chain is through */
    }
    if (len > 0) {
        if (EVP_EncryptUpdate(self->cbc, data, &written, data, (int)len) != 1 || written != (int)len) {
            return -1;
        }
    }
    if (EVP_EncryptUpdate(self->cbc, last, &written, last, 16) != 1 || written != 16) {
        return -1;
    }
    memcpy(self->chain, last, 16);
    self->chained = 1;
    return 0;
}

/* in[0:len] XOR AES-CTR(K2)'s keystream from the counter block Q, into out (in and out may be the same): the
 * counter blocks Q, Q + 1, ... (128-bit big-endian, as OpenSSL's CTR mode counts) encrypted by the ECB context,
 * up to 32 blocks per call. 0 on success, -1 if OpenSSL failed. */
static int
siv_ctr(SivKey *self, const unsigned char counter[16], const unsigned char *in, Py_ssize_t len, unsigned char *out)
{
    unsigned char blocks[512], stream[512], q[16];
    Py_ssize_t done = 0, chunk, count, b, i;
    int written;
    memcpy(q, counter, 16);
    while (done < len) {
        chunk = len - done < (Py_ssize_t)sizeof(stream) ? len - done : (Py_ssize_t)sizeof(stream);
        count = (chunk + 15) / 16;
        for (b = 0; b < count; b++) {
            memcpy(blocks + 16 * b, q, 16);
            for (i = 15; i >= 0; i--) { /* q + 1, carried */
                if (++q[i] != 0) {
                    break;
                }
            }
        }
        if (EVP_EncryptUpdate(self->ctr, stream, &written, blocks, (int)(16 * count)) != 1 || written != 16 * count) {
            return -1;
        }
        for (i = 0; i < chunk; i++) {
            out[done + i] = (unsigned char)(in[done + i] ^ stream[i]);
        }
        done += chunk;
    }
    OPENSSL_cleanse(stream, sizeof(stream));
    return 0;
}

/* V = AES-CMAC(K1, T) where T = P xorend D (len >= 16) or dbl(D) xor pad(P) (len < 16), into v. scratch has room
 * for len bytes (T is built there: P itself is left as it is, for CTR). 0 on success, -1 if OpenSSL failed. */
static int
siv_s2v(SivKey *self, const unsigned char *plain, Py_ssize_t len, unsigned char *scratch, unsigned char v[16])
{
    unsigned char last[16];
    Py_ssize_t i, full, rest;
    if (len < 16) { /* T = dbl(D) xor pad(P): one partial block, padded, so CMAC takes it with subkey 2 */
        memcpy(last, self->d, 16);
        siv_dbl(last);
        for (i = 0; i < len; i++) {
            last[i] ^= plain[i];
        }
        last[len] ^= 0x80;
        for (i = 0; i < 16; i++) { /* T is a full block: CMAC's last-block rule uses subkey 1 */
            last[i] ^= self->sub1[i];
        }
        if (siv_chain(self, scratch, 0, last) < 0) {
            return -1;
        }
        memcpy(v, last, 16);
        return 0;
    }
    memcpy(scratch, plain, (size_t)len);
    for (i = 0; i < 16; i++) { /* xorend: D into the last 16 bytes */
        scratch[len - 16 + i] ^= self->d[i];
    }
    rest = len % 16;
    full = rest == 0 ? len - 16 : len - rest; /* the blocks before CMAC's last one */
    if (rest == 0) {
        for (i = 0; i < 16; i++) {
            last[i] = scratch[full + i] ^ self->sub1[i];
        }
    }
    else {
        memset(last, 0, sizeof(last));
        memcpy(last, scratch + full, (size_t)rest);
        last[rest] = 0x80;
        for (i = 0; i < 16; i++) {
            last[i] ^= self->sub2[i];
        }
    }
    if (siv_chain(self, scratch, full, last) < 0) {
        return -1;
    }
    memcpy(v, last, 16);
    return 0;
}

/* Keys a sealing signer: the CBC and CTR contexts, CMAC's subkeys and D. 0, or -1 with an exception set. */
static int
siv_setup(SivKey *self, const unsigned char *key)
{
    unsigned char block[16];
    int i;
    if ((self->cbc == NULL && (self->cbc = EVP_CIPHER_CTX_new()) == NULL) ||
        (self->ctr == NULL && (self->ctr = EVP_CIPHER_CTX_new()) == NULL)) {
        PyErr_NoMemory();
        return -1;
    }
    memset(block, 0, sizeof(block));
    self->chained = 0;
    if (EVP_EncryptInit_ex(self->cbc, EVP_aes_256_cbc(), NULL, key, block) != 1 ||
        EVP_CIPHER_CTX_set_padding(self->cbc, 0) != 1 ||
        EVP_EncryptInit_ex(self->ctr, EVP_aes_256_ecb(), NULL, key + 32, NULL) != 1 ||
        EVP_CIPHER_CTX_set_padding(self->ctr, 0) != 1) {
        goto failed;
    }
    /* RFC 4493: L = AES(K1, 0^128), subkey 1 = dbl(L), subkey 2 = dbl(subkey 1) */
    if (siv_chain(self, block, 0, block) < 0) {
        goto failed;
    }
    siv_dbl(block);
    memcpy(self->sub1, block, 16);
    siv_dbl(block);
    memcpy(self->sub2, block, 16);
    /* D = AES-CMAC(K1, 0^128): one full block, so AES(K1, 0^128 xor subkey 1) */
    memcpy(self->d, self->sub1, 16);
    if (siv_chain(self, block, 0, self->d) < 0) {
        goto failed;
    }
    for (i = 0; i < 16; i++) {
        block[i] = 0;
    }
    return 0;
failed:
    ERR_clear_error();
    PyErr_SetString(PyExc_RuntimeError, "OpenSSL's AES-256 could not be keyed for sealing");
    return -1;
}

static void
siv_clear(SivKey *self)
{
    EVP_CIPHER_CTX_free(self->cbc); /* (cleanses the key schedules) */
    EVP_CIPHER_CTX_free(self->ctr);
    self->cbc = self->ctr = NULL;
    OPENSSL_cleanse(self->sub1, sizeof(self->sub1));
    OPENSSL_cleanse(self->sub2, sizeof(self->sub2));
    OPENSSL_cleanse(self->d, sizeof(self->d));
    OPENSSL_cleanse(self->chain, sizeof(self->chain));
    self->chained = 0;
}

/* The CTR counter of RFC 5297 section 2.6: Q = V with bits 63 and 31 cleared. */
static void
siv_counter(const unsigned char v[16], unsigned char counter[16])
{
    memcpy(counter, v, 16);
    counter[8] &= 0x7f;
    counter[12] &= 0x7f;
}

/* V || C of plain[0:len] into out (room for 16 + len bytes; S2V builds T in out + 16, then CTR overwrites it).
 * 0 on success, -1 if OpenSSL failed (no exception set; the caller words it). len < INT_MAX - 32. */
static int
siv_seal(SivKey *self, const unsigned char *plain, Py_ssize_t len, unsigned char *out)
{
    unsigned char counter[16];
    if (siv_s2v(self, plain, len, out + MT_SIV_TAG, out) < 0) {
        return -1;
    }
    siv_counter(out, counter);
    return siv_ctr(self, counter, plain, len, out + MT_SIV_TAG);
}

/* Opens sealed[0:len] (V || C, len > 16): the plaintext into plain (len - 16 bytes), with scratch the same size
 * for S2V. 1 when the tag matches (compared in constant time), 0 when it does not (plain is wiped), -1 if OpenSSL
 * failed. len < INT_MAX. */
static int
siv_open(SivKey *self, const unsigned char *sealed, Py_ssize_t len, unsigned char *plain, unsigned char *scratch)
{
    unsigned char counter[16], v[16];
    Py_ssize_t plain_len = len - MT_SIV_TAG;
    siv_counter(sealed, counter);
    if (siv_ctr(self, counter, sealed + MT_SIV_TAG, plain_len, plain) < 0) {
        return -1;
    }
    if (siv_s2v(self, plain, plain_len, scratch, v) < 0) {
        return -1;
    }
    if (CRYPTO_memcmp(v, sealed, MT_SIV_TAG) != 0) {
        OPENSSL_cleanse(plain, (size_t)plain_len);
        return 0;
    }
    return 1;
}
#endif

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The two characters of every 12 bits, in the order they are written: three bytes are two lookups (a token's
 * base64 took a tenth of a message's link work a character at a time). A constant table, B64URL's characters
 * spelled as constant expressions. */
#define MT_B64C(i) ((char)((i) < 26 ? 'A' + (i) : (i) < 52 ? 'a' + (i) - 26 : (i) < 62 ? '0' + (i) - 52 : (i) == 62 ? '-' : '_'))
#define MT_B64P(v) {MT_B64C((v) >> 6), MT_B64C((v) & 63)}
#define MT_B64P4(v) MT_B64P(v), MT_B64P((v) + 1), MT_B64P((v) + 2), MT_B64P((v) + 3)
#define MT_B64P16(v) MT_B64P4(v), MT_B64P4((v) + 4), MT_B64P4((v) + 8), MT_B64P4((v) + 12)
#define MT_B64P64(v) MT_B64P16(v), MT_B64P16((v) + 16), MT_B64P16((v) + 32), MT_B64P16((v) + 48)
#define MT_B64P256(v) MT_B64P64(v), MT_B64P64((v) + 64), MT_B64P64((v) + 128), MT_B64P64((v) + 192)
#define MT_B64P1024(v) MT_B64P256(v), MT_B64P256((v) + 256), MT_B64P256((v) + 512), MT_B64P256((v) + 768)
static const char B64URL_PAIRS[4096][2] = {MT_B64P1024(0), MT_B64P1024(1024), MT_B64P1024(2048), MT_B64P1024(3072)};
#undef MT_B64P1024
#undef MT_B64P256
#undef MT_B64P64
#undef MT_B64P16
#undef MT_B64P4
#undef MT_B64P
#undef MT_B64C

/* Unpadded URL-safe base64 of src into dst (room for b64_length(len) bytes); returns the bytes written. */
static Py_ssize_t
b64url(const unsigned char *src, Py_ssize_t len, char *dst)
{
    char *out = dst;
    Py_ssize_t i = 0;
    for (; i + 3 <= len; i += 3) {
        unsigned v = (unsigned)src[i] << 16 | (unsigned)src[i + 1] << 8 | src[i + 2];
        memcpy(out, B64URL_PAIRS[v >> 12], 2);
        memcpy(out + 2, B64URL_PAIRS[v & 0xFFF], 2);
        out += 4;
    }
    if (len - i == 1) {
        unsigned v = (unsigned)src[i] << 16;
        *out++ = B64URL[v >> 18];
        *out++ = B64URL[(v >> 12) & 63];
    }
    else if (len - i == 2) {
        unsigned v = (unsigned)src[i] << 16 | (unsigned)src[i + 1] << 8;
        *out++ = B64URL[v >> 18];
        *out++ = B64URL[(v >> 12) & 63];
        *out++ = B64URL[(v >> 6) & 63];
    }
    return out - dst;
}

static Py_ssize_t
b64_length(Py_ssize_t len)
{
    return len / 3 * 4 + (len % 3 ? len % 3 + 1 : 0);
}

/* The bytes json.encoder.encode_basestring writes for one UTF-8 byte, quotes aside (1, 2 or 6). */
static inline int
json_width(unsigned char c)
{
    if (c == '"' || c == '\\') {
        return 2;
    }
    if (c >= 0x20) {
        return 1;
    }
    return (c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t') ? 2 : 6;
}

static char *
json_escape(const unsigned char *src, Py_ssize_t len, char *out)
{
    static const char HEX[] = "0123456789abcdef";
    Py_ssize_t i;
    for (i = 0; i < len; i++) {
        unsigned char c = src[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *out++ = (char)c;
            continue;
        }
        *out++ = '\\';
        switch (c) {
        case '"': *out++ = '"'; break;
        case '\\': *out++ = '\\'; break;
        case '\b': *out++ = 'b'; break;
        case '\f': *out++ = 'f'; break;
        case '\n': *out++ = 'n'; break;
        case '\r': *out++ = 'r'; break;
        case '\t': *out++ = 't'; break;
        default:
            *out++ = 'u', *out++ = '0', *out++ = '0', *out++ = HEX[c >> 4], *out++ = HEX[c & 15];
        }
    }
    return out;
}

static int
click_signer_init(ClickSigner *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"key", "head", "tail", "stamp", "size", "sealed", NULL};
    Py_buffer key;
    PyObject *key_object, *head, *tail, *stamp;
    int size, i, sealed = 0;
    unsigned char block[64], pad[64];

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OSSSi|$p:ClickSigner", keywords, &key_object, &head, &tail, &stamp,
                                     &size, &sealed)) {
        return -1;
    }
    if (sealed) {
#ifdef MT_SIV
        /* the key: a SivKey (a codec's, keyed once for all its messages), or its 64 bytes (keyed here) */
        PyObject *module = PyType_GetModule(Py_TYPE(self));
        PyTypeObject *siv_type = module == NULL ? NULL : ((ModuleState *)PyModule_GetState(module))->siv_key_type;
        PyObject *siv;
        if (siv_type == NULL) {
            return -1;
        }
        if (PyObject_TypeCheck(key_object, siv_type)) {
            if (((SivKey *)key_object)->cbc == NULL) { /* SivKey.__new__ without __init__: no key to seal with */
                PyErr_SetString(PyExc_ValueError, "SivKey was not initialised");
                return -1;
            }
            siv = Py_NewRef(key_object);
        }
        else {
            siv = PyObject_CallOneArg((PyObject *)siv_type, key_object);
            if (siv == NULL) {
                if (PyErr_ExceptionMatches(PyExc_ValueError)) {
                    PyErr_Clear();
                    PyErr_Format(PyExc_ValueError, "a sealing ClickSigner takes a SivKey or a %d-byte AES-256-SIV key",
                                 MT_SIV_KEY);
                }
                return -1;
            }
        }
        Py_XSETREF(self->siv, (SivKey *)siv);
        Py_XSETREF(self->head, Py_NewRef(head));
        Py_XSETREF(self->tail, Py_NewRef(tail));
        Py_XSETREF(self->stamp, Py_NewRef(stamp));
        self->size = MT_SIV_TAG;
        return 0;
#else
        PyErr_SetString(PyExc_ValueError, "this build seals no tokens (built without OpenSSL: SIV_AVAILABLE is False)");
        return -1;
#endif
    }
    if (PyObject_GetBuffer(key_object, &key, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if (size < 10 || size > 32) {
        PyBuffer_Release(&key);
        PyErr_Format(PyExc_ValueError, "ClickSigner size must be between 10 and 32, not %d", size);
        return -1;
    }
#ifdef MT_SIV
    /* initialised again, to sign: only once the arguments are taken (a refused __init__ leaves a sealing signer
     * sealing, not signing with SHA-256 states its key never set) */
    Py_CLEAR(self->siv);
#endif
    memset(block, 0, sizeof(block));
    if (key.len > 64) { /* HMAC: a key longer than the block is hashed first */
        mt_sha256 ctx;
        mt_sha256_init(&ctx);
        mt_sha256_update(&ctx, (const unsigned char *)key.buf, (size_t)key.len);
        mt_sha256_final(&ctx, block);
    }
    else {
        memcpy(block, key.buf, (size_t)key.len);
    }
    PyBuffer_Release(&key);
    for (i = 0; i < 64; i++) {
        pad[i] = block[i] ^ 0x36;
    }
    mt_sha256_init(&self->inner);
    mt_sha256_update(&self->inner, pad, 64);
    for (i = 0; i < 64; i++) {
        pad[i] = block[i] ^ 0x5c;
    }
    mt_sha256_init(&self->outer);
    mt_sha256_update(&self->outer, pad, 64);
    Py_XSETREF(self->head, Py_NewRef(head));
    Py_XSETREF(self->tail, Py_NewRef(tail));
    Py_XSETREF(self->stamp, Py_NewRef(stamp));
    self->size = size;
    return 0;
}

#ifdef MT_SIV
/* The opaque token of plain[0:len] (the stamp and payload click_sign wrote there, with room after it for the
 * sealed bytes and their base64): b64url(V || C), as str. NULL with an exception set. */
static PyObject *
click_seal(ClickSigner *self, unsigned char *plain, Py_ssize_t len)
{
    unsigned char *sealed = plain + len;
    char *text = (char *)sealed + MT_SIV_TAG + len;
    Py_ssize_t text_len;
    PyObject *result;
    if (len > INT_MAX - 2 * MT_SIV_TAG) {
        PyErr_SetString(PyExc_OverflowError, "click token too long to seal");
        return NULL;
    }
    if (siv_seal(self->siv, plain, len, sealed) < 0) {
        ERR_clear_error();
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL's AES-256 failed to seal a click token");
        return NULL;
    }
    text_len = b64url(sealed, MT_SIV_TAG + len, text);
    result = PyUnicode_New(text_len, 127);
    if (result != NULL) {
        memcpy(PyUnicode_1BYTE_DATA(result), text, (size_t)text_len);
    }
    return result;
}

/* SivKey(key): a 64-byte AES-256-SIV key keyed once, for ClickSigner(sealed=True) and the codec's other tokens. */
static int
siv_key_init(SivKey *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"key", NULL};
    Py_buffer key;
    int status;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*:SivKey", keywords, &key)) {
        return -1;
    }
    if (key.len != MT_SIV_KEY) {
        PyBuffer_Release(&key);
        PyErr_Format(PyExc_ValueError, "SivKey takes a %d-byte AES-256-SIV key", MT_SIV_KEY);
        return -1;
    }
    status = siv_setup(self, (const unsigned char *)key.buf);
    PyBuffer_Release(&key);
    return status;
}

PyDoc_STRVAR(siv_key_seal_doc,
"seal(plaintext, /)\n--\n\n"
"The opaque token of plaintext: unpadded URL-safe base64 of V || C, as str (what\n"
"mailtrack.core.opaque.encode(AESSIV(key).encrypt(plaintext, None)) returns).");

static PyObject *
siv_key_seal(SivKey *self, PyObject *arg)
{
    Py_buffer plain;
    unsigned char small[1024], *buffer = NULL, *sealed;
    Py_ssize_t sealed_len, text_len;
    PyObject *result = NULL;
    if (self->cbc == NULL) {
        PyErr_SetString(PyExc_ValueError, "SivKey was not initialised");
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &plain, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (plain.len > (INT_MAX - 2 * MT_SIV_TAG) / 3) {
        PyErr_SetString(PyExc_OverflowError, "plaintext too long to seal");
        goto done;
    }
    sealed_len = MT_SIV_TAG + plain.len;
    text_len = b64_length(sealed_len);
    if (sealed_len <= (Py_ssize_t)sizeof(small)) {
        sealed = small;
    }
    else if ((sealed = buffer = PyMem_Malloc((size_t)sealed_len)) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (siv_seal(self, (const unsigned char *)plain.buf, plain.len, sealed) < 0) {
        ERR_clear_error();
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL's AES-256 failed to seal a token");
        goto done;
    }
    result = PyUnicode_New(text_len, 127);
    if (result != NULL) {
        b64url(sealed, sealed_len, (char *)PyUnicode_1BYTE_DATA(result));
    }
done:
    if (buffer != NULL) {
        PyMem_Free(buffer);
    }
    PyBuffer_Release(&plain);
    return result;
}

PyDoc_STRVAR(siv_key_open_doc,
"open(sealed, /)\n--\n\n"
"The plaintext of sealed (V || C, a decoded token's bytes) as bytes, or None when its tag does not match\n"
"this key (or it is 16 bytes or shorter). The tag is compared in constant time.");

static PyObject *
siv_key_open(SivKey *self, PyObject *arg)
{
    Py_buffer sealed;
    unsigned char small[1024], *buffer = NULL, *plain;
    Py_ssize_t plain_len;
    PyObject *result = NULL;
    int status;
    if (self->cbc == NULL) {
        PyErr_SetString(PyExc_ValueError, "SivKey was not initialised");
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &sealed, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (sealed.len <= MT_SIV_TAG) {
        PyBuffer_Release(&sealed);
        Py_RETURN_NONE;
    }
    if (sealed.len > INT_MAX / 2) {
        PyErr_SetString(PyExc_OverflowError, "token too long to open");
        goto done;
    }
    plain_len = sealed.len - MT_SIV_TAG;
    if (2 * plain_len <= (Py_ssize_t)sizeof(small)) {
        plain = small;
    }
    else if ((plain = buffer = PyMem_Malloc((size_t)(2 * plain_len))) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    status = siv_open(self, (const unsigned char *)sealed.buf, sealed.len, plain, plain + plain_len);
    if (status < 0) {
        ERR_clear_error();
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL's AES-256 failed to open a token");
    }
    else if (status == 0) {
        result = Py_NewRef(Py_None);
    }
    else {
        result = PyBytes_FromStringAndSize((const char *)plain, plain_len);
        OPENSSL_cleanse(plain, (size_t)plain_len);
    }
done:
    if (buffer != NULL) {
        PyMem_Free(buffer);
    }
    PyBuffer_Release(&sealed);
    return result;
}

static void
siv_key_dealloc(SivKey *self)
{
    PyTypeObject *type = Py_TYPE(self);
    siv_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyMethodDef siv_key_methods[] = {
    {"seal", (PyCFunction)siv_key_seal, METH_O, siv_key_seal_doc},
    {"open", (PyCFunction)siv_key_open, METH_O, siv_key_open_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(siv_key_doc,
"SivKey(key)\n--\n\n"
"One purpose's 64-byte AES-256-SIV key (K1 for S2V's CMAC, K2 for CTR), keyed once over OpenSSL's AES:\n"
"seal() and open() opaque tokens, and ClickSigner(sealed=True) takes it as its key, so a codec keys its\n"
"AES once rather than once per message. Not to be shared between threads that run without the GIL.");

static PyType_Slot siv_key_slots[] = {
    {Py_tp_doc, (void *)siv_key_doc},
    {Py_tp_init, (void *)siv_key_init},
    {Py_tp_methods, (void *)siv_key_methods},
    {Py_tp_dealloc, (void *)siv_key_dealloc},
    {Py_tp_new, (void *)PyType_GenericNew},
    {0, NULL},
};

static PyType_Spec siv_key_spec = {
    "mailtrack.core._speedups.SivKey",
    sizeof(SivKey),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    siv_key_slots,
};
#endif

/* The decimal digits of n into digits (room for 21 bytes; not NUL-terminated), as "%lld" writes them: what
 * f"{link_index}" gives for an int. Returns their number. Written out: snprintf's format parsing was a tenth of a
 * signature's cost. */
static Py_ssize_t
format_index(long long n, char digits[24])
{
    char reversed[24];
    unsigned long long magnitude = n < 0 ? 0ULL - (unsigned long long)n : (unsigned long long)n;
    Py_ssize_t count = 0, len = 0;
    do {
        reversed[count++] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude != 0);
    if (n < 0) {
        digits[len++] = '-';
    }
    while (count > 0) {
        digits[len++] = reversed[--count];
    }
    return len;
}

/* The token for (index, url), or NULL with an exception set. */
static PyObject *
click_sign(ClickSigner *self, PyObject *index, PyObject *url)
{
    char digits[24], small[2048], *payload, *value, *p, *buffer = NULL;
    const char *index_text, *url_utf8;
    Py_ssize_t index_len, url_len, escaped_len, payload_len, value_len, stamp_len, sig_len, i;
    PyObject *index_str = NULL, *result = NULL;
    unsigned char digest[32];
    mt_sha256 ctx;

    if (self->head == NULL) {
        PyErr_SetString(PyExc_ValueError, "ClickSigner was not initialised");
        return NULL;
    }
    if (!PyUnicode_Check(url)) {
        PyErr_Format(PyExc_TypeError, "first argument must be a string, not %.80s", Py_TYPE(url)->tp_name);
        return NULL;
    }
    if (PyLong_CheckExact(index)) {
        int overflow;
        long long n = PyLong_AsLongLongAndOverflow(index, &overflow);
        if (n == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (overflow) {
            goto formatted;
        }
        index_len = format_index(n, digits);
        index_text = digits;
    }
    else {
    formatted: /* f"{link_index}" for anything else: what the pure signer writes */
        index_str = PyObject_Format(index, NULL);
        if (index_str == NULL) {
            return NULL;
        }
        index_text = PyUnicode_AsUTF8AndSize(index_str, &index_len);
        if (index_text == NULL) {
            Py_DECREF(index_str);
            return NULL;
        }
    }
    url_utf8 = PyUnicode_AsUTF8AndSize(url, &url_len); /* a lone surrogate raises, as str.encode() does */
    if (url_utf8 == NULL) {
        goto done;
    }
    escaped_len = 2;
    for (i = 0; i < url_len; i++) {
        escaped_len += json_width((unsigned char)url_utf8[i]);
    }
    payload_len = PyBytes_GET_SIZE(self->head) + 1 + index_len + 1 + escaped_len + PyBytes_GET_SIZE(self->tail);
    stamp_len = PyBytes_GET_SIZE(self->stamp);
    value_len = b64_length(payload_len) + stamp_len;
    sig_len = b64_length(self->size);
#ifdef MT_SIV
    if (self->siv != NULL) { /* sealed: stamp + payload, then tag || ciphertext, then its base64 */
        /* the buffer: stamp (counted here) + payload, then tag || ciphertext, then its base64 */
        Py_ssize_t sealed_len = MT_SIV_TAG + stamp_len + payload_len;
        value_len = stamp_len + sealed_len;
        sig_len = b64_length(sealed_len) - 1; /* (the "+ 1" below) */
    }
#endif
    if (payload_len + value_len + 1 + sig_len <= (Py_ssize_t)sizeof(small)) {
        payload = small;
    }
    else {
        buffer = payload = PyMem_Malloc((size_t)(payload_len + value_len + 1 + sig_len));
        if (buffer == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
#ifdef MT_SIV
    if (self->siv != NULL) {
        memcpy(payload, PyBytes_AS_STRING(self->stamp), (size_t)stamp_len);
        payload += stamp_len;
    }
#endif
    p = payload;
    memcpy(p, PyBytes_AS_STRING(self->head), (size_t)PyBytes_GET_SIZE(self->head));
    p += PyBytes_GET_SIZE(self->head);
    *p++ = ',';
    memcpy(p, index_text, (size_t)index_len);
    p += index_len;
    *p++ = ',';
    *p++ = '"';
    p = json_escape((const unsigned char *)url_utf8, url_len, p);
    *p++ = '"';
    memcpy(p, PyBytes_AS_STRING(self->tail), (size_t)PyBytes_GET_SIZE(self->tail));
#ifdef MT_SIV
    if (self->siv != NULL) {
        result = click_seal(self, (unsigned char *)payload - stamp_len, stamp_len + payload_len);
        goto done;
    }
#endif

    value = payload + payload_len;
    p = value + b64url((const unsigned char *)payload, payload_len, value);
    memcpy(p, PyBytes_AS_STRING(self->stamp), (size_t)stamp_len);
    p += stamp_len;

    ctx = self->inner;
    mt_sha256_update(&ctx, (const unsigned char *)value, (size_t)value_len);
    mt_sha256_final(&ctx, digest);
    ctx = self->outer;
    mt_sha256_update(&ctx, digest, sizeof(digest));
    mt_sha256_final(&ctx, digest);
    *p++ = '.';
    p += b64url(digest, self->size, p);

    result = PyUnicode_New(p - value, 127);
    if (result != NULL) {
        memcpy(PyUnicode_1BYTE_DATA(result), value, (size_t)(p - value));
    }
done:
    if (buffer != NULL) {
        PyMem_Free(buffer);
    }
    Py_XDECREF(index_str);
    return result;
}

static PyObject *
click_signer_call(ClickSigner *self, PyObject *args, PyObject *kwargs)
{
    PyObject *index, *url;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs)) {
        PyErr_SetString(PyExc_TypeError, "ClickSigner takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "ClickSigner", 2, 2, &index, &url)) {
        return NULL;
    }
    return click_sign(self, index, url);
}

static int
click_signer_traverse(ClickSigner *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
#ifdef MT_SIV
    Py_VISIT(self->siv);
#endif
    return 0;
}

static void
click_signer_dealloc(ClickSigner *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->head);
    Py_CLEAR(self->tail);
    Py_CLEAR(self->stamp);
    memset(&self->inner, 0, sizeof(self->inner)); /* key material */
    memset(&self->outer, 0, sizeof(self->outer));
#ifdef MT_SIV
    Py_CLEAR(self->siv);
#endif
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

PyDoc_STRVAR(click_signer_doc,
"ClickSigner(key, head, tail, stamp, size, *, sealed=False)\n--\n\n"
"A compiled twin of the click signer TokenCodec builds for one message: called as\n"
"signer(link_index, url), it returns the same token. key is the derived HMAC-SHA256 key;\n"
"head, tail and stamp the UTF-8 bytes around the click's part; size the signature bytes kept.\n"
"sealed=True (where SIV_AVAILABLE): the opaque format's token instead, key the purpose's SivKey (or\n"
"its 64-byte AES-256-SIV key) and stamp the plaintext's lead (header byte and issue time); size is ignored.");

static PyType_Slot click_signer_slots[] = {
    {Py_tp_doc, (void *)click_signer_doc},
    {Py_tp_init, (void *)click_signer_init},
    {Py_tp_call, (void *)click_signer_call},
    {Py_tp_traverse, (void *)click_signer_traverse},
    {Py_tp_dealloc, (void *)click_signer_dealloc},
    {Py_tp_new, (void *)PyType_GenericNew},
    {0, NULL},
};

static PyType_Spec click_signer_spec = {
    "mailtrack.core._speedups.ClickSigner",
    sizeof(ClickSigner),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    click_signer_slots,
};

PyDoc_STRVAR(sign_value_doc,
"sign_value(key, data, stamp, size, /)\n--\n\n"
"b64url(data) + stamp + \".\" + b64url(HMAC-SHA256(key, b64url(data) + stamp)[:size]), as str: the token\n"
"TokenCodec's pure signer makes of a payload (open and unsubscribe tokens; clicks use ClickSigner).");

static PyObject *
speedups_sign_value(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer key, data, stamp;
    PyObject *result = NULL;
    Py_ssize_t size, value_len, total;
    unsigned char block[64], pad[64], digest[32];
    mt_sha256 inner, outer;
    char *buffer, *p;
    int i;
    (void)module;

    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "sign_value() takes 4 positional arguments (%zd given)", nargs);
        return NULL;
    }
    size = PyLong_AsSsize_t(args[3]);
    if (size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (size < 10 || size > 32) {
        PyErr_Format(PyExc_ValueError, "sign_value() size must be between 10 and 32, not %zd", size);
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &key, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &data, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&key);
        return NULL;
    }
    if (PyObject_GetBuffer(args[2], &stamp, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&key);
        PyBuffer_Release(&data);
        return NULL;
    }
    memset(block, 0, sizeof(block));
    if (key.len > 64) {
        mt_sha256_init(&inner);
        mt_sha256_update(&inner, (const unsigned char *)key.buf, (size_t)key.len);
        mt_sha256_final(&inner, block);
    }
    else {
        memcpy(block, key.buf, (size_t)key.len);
    }
    value_len = b64_length(data.len) + stamp.len;
    total = value_len + 1 + b64_length(size);
    buffer = PyMem_Malloc((size_t)total);
    if (buffer == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    p = buffer + b64url((const unsigned char *)data.buf, data.len, buffer);
    memcpy(p, stamp.buf, (size_t)stamp.len);
    p += stamp.len;
    for (i = 0; i < 64; i++) {
        pad[i] = block[i] ^ 0x36;
    }
    mt_sha256_init(&inner);
    mt_sha256_update(&inner, pad, 64);
    mt_sha256_update(&inner, (const unsigned char *)buffer, (size_t)value_len);
    mt_sha256_final(&inner, digest);
    for (i = 0; i < 64; i++) {
        pad[i] = block[i] ^ 0x5c;
    }
    mt_sha256_init(&outer);
    mt_sha256_update(&outer, pad, 64);
    mt_sha256_update(&outer, digest, sizeof(digest));
    mt_sha256_final(&outer, digest);
    *p++ = '.';
    p += b64url(digest, size, p);
    result = PyUnicode_New(p - buffer, 127);
    if (result != NULL) {
        memcpy(PyUnicode_1BYTE_DATA(result), buffer, (size_t)(p - buffer));
    }
    PyMem_Free(buffer);
done:
    memset(block, 0, sizeof(block));
    memset(pad, 0, sizeof(pad));
    PyBuffer_Release(&key);
    PyBuffer_Release(&data);
    PyBuffer_Release(&stamp);
    return result;
}

PyDoc_STRVAR(sha256_doc,
"sha256(data, /)\n--\n\n"
"The SHA-256 digest of data, by the implementation ClickSigner uses (for its test vectors).");

static PyObject *
speedups_sha256(PyObject *module, PyObject *arg)
{
    Py_buffer data;
    mt_sha256 ctx;
    unsigned char digest[32];
    (void)module;
    if (PyObject_GetBuffer(arg, &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    mt_sha256_init(&ctx);
    mt_sha256_update(&ctx, (const unsigned char *)data.buf, (size_t)data.len);
    mt_sha256_final(&ctx, digest);
    PyBuffer_Release(&data);
    return PyBytes_FromStringAndSize((const char *)digest, sizeof(digest));
}
