/*
 * fuzz_safetensors.c - libFuzzer target for pe_st_open_mem: the input is a
 * whole safetensors file, copied into an allocation of exactly its size so
 * that ASan catches any read past its end.
 *
 * Beyond "no crash", the safetensors.h contract: a failure leaves no handle,
 * a documented code and a message; a success has every tensor inside the
 * data buffer with nbytes = numel x bits / 8, spans that add up to the whole
 * buffer, names in strict order (so no duplicates), lookups by name and by
 * index that agree, floats that convert and other dtypes that are refused.
 * Then the round trip: the writer, given what was read, writes a file that
 * reads back as the same names, dtypes, shapes, bytes and metadata, and
 * writing that again gives the same bytes.
 */
#include "fuzz_util.h"
#include "safetensors.h"

static void check_failure(int rc, const pe_st *st) {
    if (st) fuzz_broken("handle set after a failure", rc);
    if (rc != PE_EFORMAT && rc != PE_ETOOBIG && rc != PE_EUNSUPPORTED &&
        rc != ENOMEM)
        fuzz_broken("undocumented return code from pe_st_open_mem", rc);
    if (pe_errmsg()[0] == 0) fuzz_broken("failure without a message", rc);
}

static int is_float(pe_st_dtype dt) {
    return dt == PE_ST_F32 || dt == PE_ST_F16 || dt == PE_ST_BF16 ||
           dt == PE_ST_F64;
}

static void check_tensor(const pe_st *st, const pe_st_tensor *t,
                         const uint8_t *data, size_t data_len) {
    unsigned bits = pe_st_dtype_bits(t->dtype);
    size_t numel = 1, nbits;
    if (!bits) fuzz_broken("tensor with an unknown dtype", t->dtype);
    if (t->ndim > PE_ST_MAX_DIMS) fuzz_broken("too many dimensions", 0);
    for (size_t d = 0; d < t->ndim; d++)
        if (__builtin_mul_overflow(numel, t->shape[d], &numel))
            fuzz_broken("shape product overflows", 0);
    if (numel != t->numel || __builtin_mul_overflow(numel, (size_t)bits, &nbits) ||
        nbits % 8 || nbits / 8 != t->nbytes)
        fuzz_broken("nbytes is not numel x bits / 8", 0);
    if (t->offset > data_len || t->nbytes > data_len - t->offset ||
        t->data != data + t->offset)
        fuzz_broken("tensor data outside the data buffer", 0);
    if (pe_st_get(st, t->name) != t) fuzz_broken("lookup by name disagrees", 0);
    size_t s = 0;
    for (size_t i = 0; i < t->nbytes; i++) s += t->data[i];
    fuzz_sink += s;

    /* numel <= nbytes for every float dtype, so this is bounded by the input */
    float *f = malloc(t->numel ? t->numel * sizeof *f : 1);
    if (!f) return;
    int rc = pe_st_to_f32(t, f, t->numel);
    if (is_float(t->dtype) ? rc != 0 : rc != PE_EUNSUPPORTED)
        fuzz_broken("pe_st_to_f32 result does not follow the dtype", rc);
    if (rc == 0)
        for (size_t i = 0; i < t->numel; i++) fuzz_sink += f[i] == f[i];
    free(f);
}

/* A writer holding everything st holds; NULL when out of memory. */
static pe_st_writer *writer_from(const pe_st *st) {
    pe_st_writer *w = NULL;
    int rc = pe_st_writer_open(&w);
    if (rc) return NULL;
    for (size_t k = 0; k < pe_st_count(st); k++) {
        const pe_st_tensor *t = pe_st_at(st, k);
        rc = pe_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data);
        if (rc == ENOMEM) goto oom;
        if (rc) fuzz_broken("the writer refused a tensor the reader accepted", rc);
    }
    for (size_t k = 0; k < pe_st_meta_count(st); k++) {
        const char *key, *value;
        if (pe_st_meta_at(st, k, &key, &value) != 0)
            fuzz_broken("metadata entry below the count is missing", 0);
        rc = pe_st_writer_meta(w, key, value);
        if (rc == ENOMEM) goto oom;
        if (rc) fuzz_broken("the writer refused metadata the reader accepted", rc);
    }
    return w;
oom:
    pe_st_writer_close(w);
    return NULL;
}

static void check_same(const pe_st *a, const pe_st *b) {
    if (pe_st_count(a) != pe_st_count(b) || pe_st_meta_count(a) != pe_st_meta_count(b))
        fuzz_broken("round trip changed the number of entries", 0);
    for (size_t k = 0; k < pe_st_count(a); k++) {
        const pe_st_tensor *x = pe_st_at(a, k), *y = pe_st_at(b, k);
        if (strcmp(x->name, y->name) || x->dtype != y->dtype || x->ndim != y->ndim ||
            memcmp(x->shape, y->shape, sizeof x->shape) || x->nbytes != y->nbytes ||
            (x->nbytes && memcmp(x->data, y->data, x->nbytes)))
            fuzz_broken("round trip changed a tensor", 0);
    }
    for (size_t k = 0; k < pe_st_meta_count(a); k++) {
        const char *ka, *va, *kb, *vb;
        pe_st_meta_at(a, k, &ka, &va);
        pe_st_meta_at(b, k, &kb, &vb);
        if (strcmp(ka, kb) || strcmp(va, vb))
            fuzz_broken("round trip changed the metadata", 0);
    }
}

static void round_trip(const pe_st *st) {
    pe_st_writer *w = writer_from(st), *w2 = NULL;
    uint8_t *out = NULL, *out2 = NULL;
    size_t len = 0, len2 = 0;
    pe_st *back = NULL;
    if (!w) return;
    int rc = pe_st_write_mem(w, &out, &len);
    if (rc == ENOMEM) goto cleanup;
    if (rc) fuzz_broken("pe_st_write_mem failed", rc);
    rc = pe_st_open_mem(&back, out, len);
    if (rc == ENOMEM) goto cleanup;
    if (rc) fuzz_broken("the reader refused what the writer wrote", rc);
    check_same(st, back);
    w2 = writer_from(back);
    if (!w2 || pe_st_write_mem(w2, &out2, &len2) != 0) goto cleanup;
    if (len2 != len || memcmp(out, out2, len))
        fuzz_broken("writing the same content twice gave different bytes", 0);
cleanup:
    free(out2);
    pe_st_writer_close(w2);
    pe_st_close(back);
    free(out);
    pe_st_writer_close(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    pe_st *st = (pe_st *)&st; /* must come back NULL on failure */
    if (!buf) return 0;
    memcpy(buf, data, size);

    pe_errclear();
    int rc = pe_st_open_mem(&st, buf, size);
    if (rc) {
        check_failure(rc, st);
        free(buf);
        return 0;
    }

    uint64_t n = 0;
    for (int k = 7; k >= 0; k--) n = n << 8 | buf[k];
    const uint8_t *dbuf = buf + 8 + n;
    size_t dlen = size - 8 - (size_t)n, covered = 0;
    const pe_st_tensor *prev = NULL;
    for (size_t k = 0; k < pe_st_count(st); k++) {
        const pe_st_tensor *t = pe_st_at(st, k);
        if (!t) fuzz_broken("pe_st_at below the count gave NULL", 0);
        if (prev && strcmp(prev->name, t->name) >= 0)
            fuzz_broken("tensors not in strict name order", 0);
        check_tensor(st, t, dbuf, dlen);
        covered += t->nbytes;
        prev = t;
    }
    if (pe_st_at(st, pe_st_count(st)) != NULL) fuzz_broken("pe_st_at past the end", 0);
    /* Spans that neither overlap nor leave holes add up to the buffer. */
    if (covered != dlen) fuzz_broken("spans do not tile the data buffer", 0);
    for (size_t k = 0; k < pe_st_meta_count(st); k++) {
        const char *key, *value;
        if (pe_st_meta_at(st, k, &key, &value) != 0 || pe_st_meta(st, key) != value)
            fuzz_broken("metadata lookup disagrees", 0);
    }

    round_trip(st);
    pe_st_close(st);
    free(buf);
    return 0;
}
