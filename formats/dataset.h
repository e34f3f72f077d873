/*
 * dataset.h - readers of dataset containers: IDX (MNIST, Fashion-MNIST,
 * gzipped or not), CIFAR-10/100 binary batches, STL-10 binary files, and tar
 * archives of encoded images (scraped sets, WebDataset shards). Also the
 * bounded gzip reader they share.
 *
 * Not for: decoding encoded images (codec.h does that; tar entries come out
 * still encoded).
 *
 * All readers parse untrusted bytes: they check every size against the
 * buffer, bound decompression (gzip bombs give PE_ETOOBIG), and report the
 * record index at fault in the message. They call the callback once per
 * record, in file order; a nonzero return from the callback stops the read
 * and is returned as is.
 *
 * Each format has a *_mem function over bytes in memory (what the fuzz
 * targets drive) and, where files are large, a path-based wrapper.
 */
#ifndef PE_DATASET_H
#define PE_DATASET_H

#include <stdio.h>
#include "../lib/image.h"

#ifndef PE_LABEL_NONE
#define PE_LABEL_NONE (-1)
#endif

/* One decoded record. img is borrowed: valid only during the callback (the
 * callback copies or steals it: setting img->px = NULL takes ownership).
 * label is PE_LABEL_NONE when the file has none. index counts records from 0. */
typedef int (*pe_sample_fn)(void *ctx, uint64_t index, pe_image *img,
                            int32_t label);

/* One still-encoded member of an archive. name is the member path as stored
 * (NUL-terminated, raw attacker bytes: escape before printing); data is
 * borrowed for the callback only. */
typedef int (*pe_entry_fn)(void *ctx, const char *name, const uint8_t *data,
                           size_t len);

/* Reads a whole file, gunzipping when it starts with the gzip magic, into a
 * malloc'd buffer (*out, *out_len; caller frees). Decompressed output above
 * max_bytes gives PE_ETOOBIG (0 = 1 GiB). Returns 0, errno, PE_EFORMAT,
 * PE_ETOOBIG. Messages name path. */
int pe_read_file_maybe_gz(const char *path, size_t max_bytes, uint8_t **out,
                          size_t *out_len);
/* The same over bytes in memory (gunzip or copy). */
int pe_gunzip_mem(const uint8_t *buf, size_t len, size_t max_bytes,
                  uint8_t **out, size_t *out_len);

/* IDX: images file (magic 0x00000803, uint8, N x rows x cols) and optional
 * labels file (0x00000801, N uint8 labels; NULL/0 when none). Counts must
 * agree. Images come out 1-channel rows x cols. */
int pe_idx_read_mem(const uint8_t *img, size_t img_len, const uint8_t *lbl,
                    size_t lbl_len, pe_sample_fn fn, void *ctx);
/* Given the images path, finds the labels file beside it by the usual naming
 * ("X-images-idx3-ubyte[.gz]" -> "X-labels-idx1-ubyte[.gz]", either
 * compression). Writes the path into out (size n) and returns 0, or
 * PE_ENOTFOUND. */
int pe_idx_find_labels(const char *images_path, char *out, size_t n);
/* Reads path (and labels_path if not NULL), either may be gzipped. */
int pe_idx_read(const char *path, const char *labels_path, pe_sample_fn fn,
                void *ctx);

/* CIFAR binary batches: records of [label] 3072 bytes (CIFAR-10, coarse=0)
 * or [coarse][fine] 3072 bytes (CIFAR-100); pixels planar R,G,B 32x32,
 * converted to HWC. CIFAR-100 reports the fine label, or the coarse one when
 * use_coarse. The record size is chosen by `variant`: 10 or 100. A file
 * whose length is not a multiple of the record size is PE_EFORMAT. */
int pe_cifar_read_mem(const uint8_t *buf, size_t len, int variant,
                      int use_coarse, pe_sample_fn fn, void *ctx);
int pe_cifar_read(const char *path, int variant, int use_coarse,
                  pe_sample_fn fn, void *ctx);

/* STL-10 binary: X files of 96x96x3 images stored column-major per channel
 * (as the dataset ships: channel planes, each transposed); y files of uint8
 * labels 1..10, reported here as 0..9. Labels NULL for the unlabeled part. */
int pe_stl10_read_mem(const uint8_t *x, size_t x_len, const uint8_t *y,
                      size_t y_len, pe_sample_fn fn, void *ctx);
/* labels_path may be NULL; when NULL and path is "X_bin" style
 * (train_X.bin), the reader looks for train_y.bin beside it. */
int pe_stl10_read(const char *path, const char *labels_path, pe_sample_fn fn,
                  void *ctx);

/* tar (POSIX ustar, GNU long names 'L', pax 'x' path records; gzip handled by
 * the caller via pe_read_file_maybe_gz or pe_tar_read). Regular-file members
 * only; directories, links and devices are skipped. Member size is bounded by
 * max_member (0 = 256 MiB). */
int pe_tar_read_mem(const uint8_t *buf, size_t len, size_t max_member,
                    pe_entry_fn fn, void *ctx);
/* Streams a tar file (plain or .gz/.tgz) from path without holding it all. */
int pe_tar_read(const char *path, size_t max_member, pe_entry_fn fn,
                void *ctx);

/* 1 when head (the first bytes of a file, at least 512 for certainty)
 * starts a tar archive: "ustar" at offset 257, or a v7 header whose checksum
 * is valid; 0 otherwise. */
int pe_is_tar(const uint8_t *head, size_t len);

#endif
