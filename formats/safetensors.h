/*
 * safetensors.h - reads and writes safetensors files: the checkpoint format
 * PyTorch reads (safetensors.torch.load_file) and the one encoders written
 * by other people come in.
 *
 * Not for: pickled .pt/.pth checkpoints (never read: unpickling runs code),
 * memory-mapping multi-GB files (the reader holds the whole file), or
 * converting integer tensors to float.
 *
 * The format: an 8-byte little-endian u64 N, N bytes of UTF-8 JSON, then the
 * data buffer. The JSON is an object mapping each tensor name to
 *   {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
 * (offsets in bytes from the start of the data buffer, data little-endian,
 * row-major), plus an optional "__metadata__" object of string values.
 *
 * Untrusted input. pe_st_open_mem accepts what the reference library
 * (huggingface/safetensors) accepts, except where noted below as stricter
 * (unknown fields, duplicate keys, \u0000, whitespace before the object),
 * and refuses everything else with PE_EFORMAT and a message naming the
 * tensor (or metadata key, or file offset) at fault:
 *  - N at least 2, at most PE_ST_MAX_HEADER (PE_ETOOBIG above), within the
 *    file; the header starts with '{'; trailing JSON whitespace (the
 *    writers' space padding) is allowed, anything else after the object not.
 *  - Strict JSON (RFC 8259), by a parser of its own: valid UTF-8, no raw
 *    control characters in strings, escapes checked (\uXXXX with surrogate
 *    pairs paired; \u0000 refused, since names are C strings), no trailing
 *    commas, no leading zeros. The parser follows the schema and never
 *    recurses: valid headers nest 3 deep ({ name { shape [ ), and any other
 *    bracket is refused where it stands, so a nesting bomb costs nothing.
 *  - Shapes and offsets are non-negative integers (no sign, fraction or
 *    exponent) that fit in size_t; shape products and byte sizes are
 *    overflow-checked (an overflowing product is refused even when a later
 *    dimension is 0, as the reference does).
 *  - Each tensor object has exactly the fields dtype, shape and
 *    data_offsets, each once. An unknown field is refused rather than
 *    ignored: it could change how the bytes are meant to be read.
 *  - dtype is one of the names in pe_st_dtype below; an unknown dtype is
 *    refused (PE_EFORMAT, naming the tensor and the dtype): without its
 *    element size the tensor's span cannot be checked. Known dtypes this
 *    code cannot convert still load (pe_st_to_f32 says PE_EUNSUPPORTED).
 *  - At most PE_ST_MAX_DIMS dimensions (more: PE_EUNSUPPORTED).
 *  - end - begin == product(shape) x element size, exactly; end within the
 *    data buffer.
 *  - Duplicate tensor names (compared after unescaping) and duplicate
 *    metadata keys are refused, as is a second "__metadata__".
 *  - The spans tile the data buffer: sorted by offset, each starts where the
 *    previous one ended (an overlap or a hole is refused) and the last ends
 *    at the end of the file (uncovered trailing bytes are refused).
 *  - "__metadata__" is an object whose values are all strings.
 *
 * Return codes: 0, PE_EFORMAT, PE_ETOOBIG (header above the limit),
 * PE_EUNSUPPORTED (too many dimensions), ENOMEM; pe_st_read_file also an
 * errno from open/read. Messages quote names raw (attacker bytes): escape
 * them before printing (pe_esc).
 */
#ifndef PE_SAFETENSORS_H
#define PE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

/* Largest header accepted (bytes), the reference library's limit. */
#define PE_ST_MAX_HEADER 100000000u
/* Most dimensions a tensor may have here. */
#define PE_ST_MAX_DIMS 8

/* Element types, in the reference library's order: its writer lays tensors
 * out by descending dtype (so by descending alignment), then by name, and so
 * does pe_st_write_file. */
typedef enum pe_st_dtype {
    PE_ST_BOOL,        /* 1 byte, 0 or 1 */
    PE_ST_F4,          /* 4 bits, E2M1, two per byte */
    PE_ST_F6_E2M3,     /* 6 bits, packed */
    PE_ST_F6_E3M2,     /* 6 bits, packed */
    PE_ST_U8,
    PE_ST_I8,
    PE_ST_F8_E5M2,
    PE_ST_F8_E4M3,
    PE_ST_F8_E8M0,
    PE_ST_F8_E4M3FNUZ,
    PE_ST_F8_E5M2FNUZ,
    PE_ST_I16,
    PE_ST_U16,
    PE_ST_F16,         /* IEEE binary16 */
    PE_ST_BF16,        /* bfloat16: the top half of a binary32 */
    PE_ST_I32,
    PE_ST_U32,
    PE_ST_F32,
    PE_ST_C64,         /* complex: two F32, real first */
    PE_ST_F64,
    PE_ST_I64,
    PE_ST_U64,
    PE_ST_NDTYPES
} pe_st_dtype;

/* The header's name of a dtype ("F32"), or "?" for a value out of range. */
const char *pe_st_dtype_name(pe_st_dtype dt);
/* Bits per element (4, 6, 8, 16, 32 or 64), or 0 for a value out of range. */
unsigned pe_st_dtype_bits(pe_st_dtype dt);

/* One tensor of an open file. Every pointer is borrowed from the pe_st and
 * lives until pe_st_close. */
typedef struct pe_st_tensor {
    const char *name;              /* UTF-8, NUL-terminated, no NUL inside */
    pe_st_dtype dtype;
    size_t ndim;                   /* 0 for a scalar */
    size_t shape[PE_ST_MAX_DIMS];  /* (ndim) dimensions; the rest 0 */
    size_t numel;                  /* product of shape; 1 for a scalar */
    const uint8_t *data;           /* nbytes little-endian bytes, row-major,
                                    * not necessarily aligned */
    size_t nbytes;
    size_t offset;                 /* data - start of the data buffer */
} pe_st_tensor;

typedef struct pe_st pe_st;

/* Parses and validates a safetensors file held in memory (buf, len bytes).
 * buf is borrowed: it must stay valid and unchanged until pe_st_close, and
 * tensor data points into it. On success *out is a handle for pe_st_close;
 * on failure *out is NULL and the message says what is wrong, starting with
 * "safetensors: ". Returns 0, PE_EFORMAT, PE_ETOOBIG, PE_EUNSUPPORTED or
 * ENOMEM. */
int pe_st_open_mem(pe_st **out, const uint8_t *buf, size_t len);

/* Reads the whole file at path and parses it as pe_st_open_mem does; the
 * handle owns the bytes. Messages are prefixed with path. Returns what
 * pe_st_open_mem does, or an errno (ENOENT, EISDIR, EIO...). */
int pe_st_read_file(pe_st **out, const char *path);

/* Frees the handle (and the file bytes it owns). NULL is a no-op. */
void pe_st_close(pe_st *st);

/* Number of tensors. */
size_t pe_st_count(const pe_st *st);
/* Tensor i (0 <= i < pe_st_count) in name order (bytewise strcmp), or NULL
 * when i is out of range. */
const pe_st_tensor *pe_st_at(const pe_st *st, size_t i);
/* Tensor by name, or NULL when there is none (no message is set). */
const pe_st_tensor *pe_st_get(const pe_st *st, const char *name);

/* Metadata value for key, or NULL when absent. Borrowed until pe_st_close. */
const char *pe_st_meta(const pe_st *st, const char *key);
/* Number of metadata entries, and entry i in key order (*key and *value
 * borrowed until pe_st_close). pe_st_meta_at returns 0, or PE_ENOTFOUND
 * when i is out of range. */
size_t pe_st_meta_count(const pe_st *st);
int pe_st_meta_at(const pe_st *st, size_t i, const char **key,
                  const char **value);

/* Converts tensor t (F32, F16, BF16 or F64) to n host floats in dst, which
 * must hold n = t->numel values. F16 and BF16 convert exactly (subnormals,
 * infinities and NaNs included); F64 rounds to nearest, and values beyond
 * the float range become +-inf. Returns 0, PE_EUSAGE when n != t->numel,
 * or PE_EUNSUPPORTED for any other dtype; dst is untouched on failure. */
int pe_st_to_f32(const pe_st_tensor *t, float *dst, size_t n);

/*
 * Writer. Collects tensors and metadata in any order, then writes the file
 * the way the reference library does: tensors ordered by descending dtype,
 * then by name (so each one is aligned to its element size), in the header
 * and in the data buffer alike; "__metadata__" first, its keys in order;
 * compact JSON padded with spaces to a multiple of 8 bytes. Names and
 * metadata may hold any UTF-8 (quotes, backslashes, control characters,
 * non-ASCII): they are escaped by pe_escape(PE_ESC_JSON).
 */
typedef struct pe_st_writer pe_st_writer;

/* Returns 0 or ENOMEM; *out is freed with pe_st_writer_close. */
int pe_st_writer_open(pe_st_writer **out);

/* Frees the writer. NULL is a no-op. */
void pe_st_writer_close(pe_st_writer *w);

/* Adds a tensor: ndim (0..PE_ST_MAX_DIMS) dimensions in shape (may be NULL
 * when ndim is 0), elements of dtype in host byte order at data (product of
 * shape x element size bytes; NULL allowed when that is 0). name is copied;
 * data is borrowed: it must stay valid and unchanged until the last
 * pe_st_write_file/pe_st_write_mem of this writer. Returns 0, ENOMEM,
 * PE_EEXIST (name already added) or PE_EUSAGE (name NULL, not valid UTF-8
 * or "__metadata__"; bad dtype; too many dimensions or a NULL shape; a size
 * that overflows; a packed dtype whose bits do not fill whole bytes; NULL
 * data for a non-empty tensor). Nothing is added on failure. */
int pe_st_writer_add(pe_st_writer *w, const char *name, pe_st_dtype dtype,
                     size_t ndim, const size_t *shape, const void *data);

/* Adds a metadata entry; key and value are copied. Returns 0, ENOMEM,
 * PE_EEXIST (key already added) or PE_EUSAGE (NULL or not valid UTF-8). */
int pe_st_writer_meta(pe_st_writer *w, const char *key, const char *value);

/* Writes the file to path atomically: into a new file beside it (path
 * followed by ".tmp.<pid>.<n>", created with O_EXCL), fsync'd, then renamed
 * over path, and the directory fsync'd. A crash or kill at any point leaves
 * either the old file or the complete new one at path (and perhaps a stray
 * temporary file); on failure the temporary file is removed. Returns 0, an
 * errno (message names the path and the step), or PE_ETOOBIG (header above
 * PE_ST_MAX_HEADER). */
int pe_st_write_file(pe_st_writer *w, const char *path);

/* The same bytes into a malloc'd buffer (*out, *len; the caller frees).
 * Returns 0, ENOMEM or PE_ETOOBIG. */
int pe_st_write_mem(pe_st_writer *w, uint8_t **out, size_t *len);

#endif
