/*
 * store.h - the image store: one LMDB environment (a directory) with the
 * named databases meta, img, info, set and class. The on-disk format is
 * specified byte by byte in docs/store-format.md; this header is the API.
 *
 * Not for: decoding files (formats/), or deciding what goes in a set
 * (programs do). The store is trusted input: liblmdb does not validate its
 * pages, so a hostile data.mdb can crash a reader. Exchange data as exported
 * image files, not as stores.
 *
 * Threads and processes: any number of readers, one writer at a time (LMDB's
 * lock). Read transactions are MDB_RDONLY on an env opened MDB_NOTLS, so a
 * read txn may move between threads but is used by one at a time. Opening the
 * same path twice in one process returns the same environment (refcounted).
 *
 * Ownership: pe_store_open gives a handle freed by pe_store_close. Pointers
 * into a transaction (pe_rec views, names from the class db) are valid until
 * that transaction ends or is reset; copy what must outlive it.
 */
#ifndef PE_STORE_H
#define PE_STORE_H

#include <stdint.h>
#include "image.h"

#define PE_STORE_VERSION 1      /* format version this build writes */
#define PE_KEY_LEN 16
#define PE_KEY_HEX 32
#define PE_SET_NAME_MAX 200     /* bytes; see pe_set_name_ok */
#define PE_INFO_MAX_SOURCES 8   /* sources kept per image; the rest counted */
#define PE_SOURCE_MAX 1024      /* bytes of a source string kept */
#ifndef PE_LABEL_NONE
#define PE_LABEL_NONE (-1)
#endif
typedef struct pe_store pe_store;
typedef struct pe_txn pe_txn;

typedef struct pe_key {
    uint8_t b[PE_KEY_LEN]; /* XXH128 canonical (big-endian) form */
} pe_key;

/* pe_store_open flags */
enum {
    PE_STORE_RDONLY = 1, /* readers: open MDB_RDONLY; never create */
    PE_STORE_CREATE = 2, /* writers: create the directory and store if missing */
};

/* Resolves the store path: opt (from -S) if not NULL, else $PE_STORE if set
 * and non-empty, else "./pe.lmdb". Returns a pointer to one of those strings
 * (static or environment-owned). */
const char *pe_store_path(const char *opt);

/* Opens (or creates, with PE_STORE_CREATE) the store at path. Refuses, with a
 * message naming path: a regular file or non-store directory (PE_EFORMAT), a
 * store of a newer format version (PE_EVERSION), a network file system
 * (PE_EUNSUPPORTED), a missing store without CREATE (PE_ENOTFOUND). Clears
 * stale reader slots left by killed processes. */
int pe_store_open(pe_store **out, const char *path, unsigned flags);
void pe_store_close(pe_store *st);
const char *pe_store_get_path(const pe_store *st);

/* Transactions. A write txn is exclusive (blocks other writers, in and out of
 * process). Commit returns ENOSPC/EFBIG/MDB errors as PE_ESTORE or errno with
 * a message; the txn is gone either way. A map that fills during a write txn
 * gives PE_ETOOBIG from the put: abort, call pe_store_grow, replay the batch. */
int pe_txn_begin(pe_store *st, int write, pe_txn **out);
int pe_txn_commit(pe_txn *txn);
void pe_txn_abort(pe_txn *txn);
/* Read txns only: releases the snapshot and takes a fresh one, so a long
 * scan does not pin old pages while a writer works. Views taken before are
 * invalid after. */
int pe_txn_renew(pe_txn *txn);
/* Doubles the map size (or to at least the file size x 2). Only with no txn
 * open in this process. */
int pe_store_grow(pe_store *st);
/* Runs body in a write txn and commits it; when the map fills (PE_ETOOBIG
 * from a put) the txn is aborted, the map grown and body run again from the
 * start, so body must be a pure function of its inputs and the store
 * (programs that write one batch: pe-craft, pe-inject). Any other error
 * aborts (nothing written) and is returned. */
typedef int (*pe_write_fn)(void *ctx, pe_txn *txn);
int pe_store_write(pe_store *st, pe_write_fn body, void *ctx);

/* ---- keys ---- */
/* XXH3-128 (seed 0) of: uint32 LE width, uint32 LE height, uint32 LE
 * channels, then the w*h*c pixel bytes HWC. */
void pe_key_of_image(const pe_image *im, pe_key *out);
/* 32 lowercase hex digits + NUL; out has room for PE_KEY_HEX + 1. */
void pe_key_to_hex(const pe_key *k, char *out);
/* Parses exactly 32 hex digits (either case). Returns 0 or PE_EFORMAT. */
int pe_key_from_hex(const char *s, size_t len, pe_key *out);

/* ---- images ---- */
enum {
    PE_ENC_RAW = 0,     /* pixels as is */
    PE_ENC_DEFLATE = 1, /* Paeth-predicted rows, raw DEFLATE (libdeflate) */
};

/* Provenance of one occurrence of an image (what pe-ingest saw). */
typedef struct pe_prov {
    const char *src;   /* source, NUL-terminated, truncated to PE_SOURCE_MAX */
    const char *ops;   /* canonicalisation done, e.g. "orient=6 size=64x64" */
    uint32_t orig_w, orig_h;
    uint8_t orig_c, orig_bits;
    uint8_t format;    /* pe_format */
} pe_prov;

/* Stores im under its key unless present. On a key hit the stored pixels are
 * compared byte for byte: equal -> *existed = 1, nothing written; different
 * -> PE_ECOLLISION (nothing written). encoding is PE_ENC_RAW or
 * PE_ENC_DEFLATE (applies only when the image is new). Also records prov in
 * info (count +1; kept while fewer than PE_INFO_MAX_SOURCES). prov may be
 * NULL (no info change). */
int pe_img_put(pe_txn *txn, const pe_image *im, int encoding,
               const pe_prov *prov, pe_key *key_out, int *existed);

/* The same with the key already computed by pe_key_of_image (ingest hashes
 * on its worker threads). A key that is not the image's gives a record
 * that pe-ls --check reports; the pixel comparison on a hit still holds. */
int pe_img_put_keyed(pe_txn *txn, const pe_image *im, const pe_key *key,
                     int encoding, const pe_prov *prov, int *existed);

/* Header of a stored image without decoding pixels. Returns 0,
 * PE_ENOTFOUND, PE_ECORRUPT (length check failed). */
typedef struct pe_img_hdr {
    uint32_t w, h, c;
    int encoding;
    size_t stored_len; /* bytes in the record, header included */
} pe_img_hdr;
int pe_img_stat(pe_txn *txn, const pe_key *key, pe_img_hdr *hdr);
/* Reads (and decodes) a stored image into *out (must be empty; caller frees
 * with pe_image_free). Checks w*h*c against the value length. */
int pe_img_get(pe_txn *txn, const pe_key *key, pe_image *out);
int pe_img_exists(pe_txn *txn, const pe_key *key); /* 1, 0, or <0 error */
int pe_img_del(pe_txn *txn, const pe_key *key);    /* img, info, derived */

/* ---- derived records ----
 * What a program computed from an image's pixels and keeps for the next
 * run (pe-audit's per-image measures and hashes), in the `audit` database
 * under the image key plus a tag byte naming the kind of record. The key
 * names the pixels, so a record never goes stale; its value carries its
 * own version (the caller's business). pe_img_del deletes them with the
 * image.
 * pe_derived_get: 0 with *val (valid until the txn ends or renews) and
 * *len, PE_ENOTFOUND (none, or a read-only store made before the
 * database existed), or a store error.
 * pe_derived_put: write txns only; replaces. */
int pe_derived_get(pe_txn *txn, const pe_key *key, uint8_t tag, const void **val, size_t *len);
int pe_derived_put(pe_txn *txn, const pe_key *key, uint8_t tag, const void *val, size_t len);

/* Provenance read back: total occurrences recorded and up to
 * PE_INFO_MAX_SOURCES entries (views into the txn). */
typedef struct pe_info {
    uint64_t count;
    uint32_t n;
    pe_prov prov[PE_INFO_MAX_SOURCES];
} pe_info;
int pe_info_get(pe_txn *txn, const pe_key *key, pe_info *out);

/* Calls fn for every image key in key order (the image is not decoded; use
 * pe_img_get). A nonzero return from fn stops and is returned. */
typedef int (*pe_img_fn)(void *ctx, pe_txn *txn, const pe_key *key);
int pe_img_each(pe_txn *txn, pe_img_fn fn, void *ctx);

/* ---- sets ---- */
/* Set names: 1..PE_SET_NAME_MAX bytes, no NUL, no control characters, no
 * '/' and no leading '.' (reserved for staging). Returns 0 or PE_EUSAGE. */
int pe_set_name_ok(const char *name);

typedef struct pe_set_hdr {
    uint32_t id;          /* entries are keyed by id, so rename is O(1) */
    uint64_t n_distinct;  /* entries */
    uint64_t n_total;     /* sum of counts */
    uint64_t created;     /* unix seconds */
    uint32_t n_classes;
    const char *const *classes; /* n_classes names (views; "" = unnamed) */
    const char *attrs;    /* "key=value\n" lines, NUL-terminated (view) */
} pe_set_hdr;

/* Looks a set up. Returns 0, PE_ENOTFOUND. hdr views live with the txn. */
int pe_set_get(pe_txn *txn, const char *name, pe_set_hdr *hdr);
/* Creates an empty set (PE_EEXIST if present). */
int pe_set_create(pe_txn *txn, const char *name);
/* Renames (PE_EEXIST if to exists unless replace; the replaced set's
 * entries are deleted). O(1) in the set's size, plus the deletion. */
int pe_set_rename(pe_txn *txn, const char *from, const char *to, int replace);
/* Deletes a set and all its entries. */
int pe_set_delete(pe_txn *txn, const char *name);
/* Adds count occurrences of key to set with label (PE_LABEL_NONE for
 * unlabeled). An entry that exists gets count added; its label must match
 * (PE_EEXIST otherwise, with a message naming key and both labels) unless
 * the existing one is unlabeled, which the new label replaces. */
int pe_set_add(pe_txn *txn, const char *set, const pe_key *key,
               uint32_t count, int32_t label);
/* Removes the entry (all its count). PE_ENOTFOUND if absent. */
int pe_set_remove(pe_txn *txn, const char *set, const pe_key *key);
typedef struct pe_set_entry {
    pe_key key;
    uint32_t count;
    int32_t label; /* PE_LABEL_NONE when unlabeled */
} pe_set_entry;
int pe_set_lookup(pe_txn *txn, const char *set, const pe_key *key,
                  pe_set_entry *out);
/* Sets class names (replaces); names[i] may be "" for an unnamed id. */
int pe_set_set_classes(pe_txn *txn, const char *set, const char *const *names,
                       uint32_t n);
/* Finds a class id by name (or a decimal id); PE_ENOTFOUND otherwise. */
int pe_set_class_id(const pe_set_hdr *hdr, const char *name, int32_t *id);
/* Sets/replaces one attribute line ("key=value"); value without newlines;
 * v NULL deletes the line. */
int pe_set_set_attr(pe_txn *txn, const char *set, const char *k,
                    const char *v);

/* Iterates the entries of a set in key order. For long scans on a read txn
 * the iterator renews the txn every `renew_every` entries (0 = never) and
 * re-seeks past the last key, so views from before are invalid after each
 * call to pe_set_iter_next. */
typedef struct pe_set_iter pe_set_iter;
int pe_set_iter_open(pe_txn *txn, const char *set, uint64_t renew_every,
                     pe_set_iter **out);
/* Returns 1 with *e filled, 0 at the end, <0 on error. */
int pe_set_iter_next(pe_set_iter *it, pe_set_entry *e);
void pe_set_iter_close(pe_set_iter *it);

/* Lists sets (names in order; staging sets included only with staging=1). */
typedef int (*pe_set_list_fn)(void *ctx, const char *name,
                              const pe_set_hdr *hdr);
int pe_set_list(pe_txn *txn, int staging, pe_set_list_fn fn, void *ctx);

/* Store-wide numbers for pe-ls --stats. */
typedef struct pe_store_stats {
    uint64_t n_images, n_info, n_set_entries, n_sets;
    uint64_t bytes_pixels;     /* sum of w*h*c */
    uint64_t bytes_stored;     /* sum of record lengths */
    uint64_t map_size, file_size, page_size;
    uint32_t version;
    uint64_t created;
} pe_store_stats;
int pe_store_stats_get(pe_txn *txn, pe_store_stats *out);

/* Garbage collection: deletes images (img+info) in no set. Writes the
 * number deleted to *n. Also removes staging sets of dead writers: a
 * staging set records its writer as the attribute "writer=HOST PID START"
 * (pe_writer_identity); it is dead when HOST is this host and no process
 * PID with that start time runs. */
int pe_store_gc(pe_txn *txn, uint64_t *n);
/* "HOST PID START" of the calling process, for the writer attribute. */
int pe_writer_identity(char *buf, size_t n);

/* Consistency check of the whole store (pe-ls --check): every image record
 * parses and its length matches w*h*c (compressed ones inflate); every info
 * record parses; every set entry's image exists with info; every set's
 * header counts equal its entries; no entry belongs to an unknown set id.
 * Problems are counted in *problems, and the first one's message is left
 * in pe_errmsg(). Returns 0 (even with problems) or an error code when the
 * store cannot be read at all. */
typedef struct pe_check_report {
    uint64_t images, infos, entries, sets, problems;
} pe_check_report;
int pe_store_check(pe_txn *txn, pe_check_report *r);

#endif
