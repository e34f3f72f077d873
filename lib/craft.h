/*
 * craft.h - PoisonedEncoder's poisoning inputs (pe-craft): a target input
 * and a reference input of the target class placed side by side, the shared
 * edge matched by resizing one of them with its aspect kept, stored at the
 * composite's native size with its provenance.
 *
 * Not for: choosing targets or budgets (cmd/pe-craft.c), putting poisons
 * into sets (pe-inject), or training.
 *
 * Geometry, for the left-right layout (top-bottom is the same with width and
 * height exchanged): the target, scaled by the draw's factor s (1 unless
 * jittered; sizes round half up, at least 1), and the reference are brought
 * to one height E by the fit rule; the reference is then made E + off tall
 * (aspect kept) and an E-tall window starting `shift` rows down is cut from
 * it (off = 0 unless offsets are drawn); the two are placed with `gap`
 * columns of the fill colour between them, target first or second. Every
 * resize is Pillow's bilinear (pe_image_resize_bilinear), so a composite can
 * be rebuilt in Python bit for bit.
 *
 * Adaptive poisons (an attacker who expects an audit): the target's copy is
 * perturbed before it is placed (pe_craft_perturb: crop, then resample, then
 * colour, then JPEG, whatever order they were asked in), and the finished
 * composite can be squashed to a fixed size or to the target's own size
 * (--size), with the same bilinear resize.
 *
 * Randomness: poison j of target t, attempt a, draws from the Philox stream
 * with key (seed, t) under PE_RNG_TAG_CRAFT and counters (j, a, 0), in this
 * order: layout (when both are allowed), order, reference (uniform draw),
 * then, when jitter or offsets apply, scale, offset, shift. Each
 * perturbation that is on draws from its own stream of the same key,
 * counters (j, a, PE_CRAFT_STREAM_*): crop the left, top, right and bottom
 * edges (pe_rng_int in [0, N] each), resample the factor (as the jitter),
 * colour three offsets (pe_rng_int in [-V, V]; a gray target takes the
 * first). So turning a perturbation or --size on or off changes no other
 * draw, and runs without them make what they made before. A run is
 * reproducible from its seed and inputs alone.
 */
#ifndef PE_CRAFT_H
#define PE_CRAFT_H

#include <stddef.h>
#include <stdint.h>

#include "image.h"
#include "store.h"

#define PE_ATTACK_NAME "poisonedencoder"
#define PE_ATTACK_VERSION 1
#define PE_CRAFT_SOURCE "pe-craft" /* the source of every poison's pe_prov */

enum { PE_LAYOUT_LR = 1, PE_LAYOUT_TB = 2 };

/* The third counter word of each perturbation's stream (0 is the stream
 * of the composite's own draws). */
enum { PE_CRAFT_STREAM_CROP = 1, PE_CRAFT_STREAM_RESAMPLE = 2, PE_CRAFT_STREAM_COLOR = 3 };

/* The largest strengths --perturb takes. */
#define PE_PERTURB_MAX_RESAMPLE 0.9
#define PE_PERTURB_MAX_CROP 4096
#define PE_PERTURB_MAX_COLOR 255

typedef enum pe_fit {
    PE_FIT_REFERENCE = 0, /* the reference takes the target's edge (default) */
    PE_FIT_TARGET = 1,    /* the target takes the reference's edge */
    PE_FIT_SMALLER = 2,   /* the one with the shorter edge is enlarged */
    PE_FIT_LARGER = 3,    /* the one with the longer edge is reduced */
} pe_fit;

typedef enum pe_ref_draw {
    PE_DRAW_UNIFORM = 0,     /* each poison draws a reference at random */
    PE_DRAW_ROUND_ROBIN = 1, /* poison j of a target takes reference j mod n */
} pe_ref_draw;

typedef enum pe_craft_size {
    PE_CRAFT_SIZE_NATIVE = 0, /* the composite's own size (default) */
    PE_CRAFT_SIZE_FIXED = 1,  /* squashed to size_w x size_h */
    PE_CRAFT_SIZE_TARGET = 2, /* squashed to the target's own size */
} pe_craft_size;

/* What is done to each copy of a target before it is placed; 0 = off. */
typedef struct pe_perturb {
    uint32_t crop;   /* up to crop pixels off each edge, then resized back */
    double resample; /* scaled by a factor in [1-r, 1+r] and back (0 < r <= 0.9) */
    uint32_t color;  /* an offset in [-color, color] added per channel, clamped */
    uint32_t jpeg;   /* a JPEG round trip at this quality (1..100) */
} pe_perturb;

typedef struct pe_craft_opts {
    unsigned layouts;  /* PE_LAYOUT_LR | PE_LAYOUT_TB */
    pe_fit fit;
    uint32_t gap;      /* pixels between the two parts */
    uint8_t fill[3];   /* gap colour (gray images use fill[0]) */
    double jitter;     /* target scale drawn in [1 - jitter, 1 + jitter] */
    uint32_t offset;   /* reference window shift drawn in [0, offset] */
    pe_ref_draw draw;
    int distinct;      /* every poison must differ (retries with jitter) */
    uint64_t seed;
    pe_craft_size size;
    uint32_t size_w, size_h; /* with PE_CRAFT_SIZE_FIXED */
    pe_perturb perturb;
} pe_craft_opts;

void pe_craft_opts_default(pe_craft_opts *o);
/* PE_EUSAGE with a message for values out of range. */
int pe_craft_opts_check(const pe_craft_opts *o);

/* The random choices of one poison. */
typedef struct pe_craft_draw {
    int layout;       /* PE_LAYOUT_LR or PE_LAYOUT_TB */
    int target_first; /* target left (or top) */
    uint32_t ref;     /* index among the target class's references */
    double scale;     /* target scale factor */
    uint32_t off;     /* extra reference length along the shared edge */
    uint32_t shift;   /* window start in [0, off] */
    /* the target copy's perturbation (zero for the kinds that are off) */
    uint32_t crop[4]; /* pixels off the left, top, right and bottom edges */
    double resample;  /* scale factor, undone at once (with perturb.resample) */
    int32_t color[3]; /* offset per channel (a gray target takes color[0]) */
} pe_craft_draw;

/* Draws poison j of target t (attempt a; attempts above 0 are the retries
 * of --distinct and always draw a scale and an offset, at least +-0.25 and
 * 4 pixels) among nrefs references, and the perturbations that are on. */
void pe_craft_draw_params(const pe_craft_opts *o, uint32_t t, uint32_t j,
                          uint32_t attempt, uint32_t nrefs, pe_craft_draw *d);

/* The copy of target that poison d places, into *out (empty; caller
 * frees), at the target's size: with o->perturb's kinds that are on, in
 * this order,
 *   crop      the d->crop[] pixels off the left, top, right and bottom
 *             edges, then resized back (Pillow's bilinear: PIL's
 *             im.crop(box).resize(size, BILINEAR));
 *   resample  resized to round(w * d->resample) x round(h * d->resample)
 *             (half up, at least 1) and back, when that size differs;
 *   color     d->color[] added per channel (color[0] on gray), clamped
 *             to 0..255;
 *   jpeg      encoded at quality o->perturb.jpeg (pe_encode_jpeg, as
 *             Pillow's save(quality=Q)) and decoded again.
 * A plain copy when none is on. PE_EUSAGE when a crop leaves no pixel,
 * PE_EUNSUPPORTED when a resample would exceed the pixel limit. */
int pe_craft_perturb(const pe_image *target, const pe_craft_opts *o,
                     const pe_craft_draw *d, pe_image *out);

/* Builds the poison of target and ref (same channel count, else
 * PE_EUSAGE) into *out (empty; caller frees): the target's copy perturbed
 * (pe_craft_perturb), the composite, then the resize that o->size asks
 * for (Pillow's bilinear, aspect not kept). PE_EUNSUPPORTED when the
 * composite would exceed PE_DEFAULT_MAX_PIXELS. */
int pe_compose(const pe_image *target, const pe_image *ref,
               const pe_craft_opts *o, const pe_craft_draw *d, pe_image *out);

/* Size of the poison (after o->size) without building it. */
int pe_compose_size(uint32_t tw, uint32_t th, uint32_t rw, uint32_t rh,
                    const pe_craft_opts *o, const pe_craft_draw *d,
                    uint32_t *w, uint32_t *h);

/* The sizes of one poison's steps, for its record. */
typedef struct pe_craft_shape {
    uint32_t c;                      /* channels */
    uint32_t resample_w, resample_h; /* the target copy's resample (0 when off) */
    uint32_t comp_w, comp_h;         /* the composite */
    uint32_t w, h;                   /* the poison, after o->size */
} pe_craft_shape;

/* Fills *sh for a target of tw x th x c and a reference of rw x rh; the
 * errors of pe_compose_size. */
int pe_compose_shape(uint32_t tw, uint32_t th, uint32_t c, uint32_t rw, uint32_t rh,
                     const pe_craft_opts *o, const pe_craft_draw *d, pe_craft_shape *sh);

typedef struct pe_craft_target {
    pe_key key;
    int32_t cls;    /* target class id */
    uint32_t count; /* poisons to make for it */
} pe_craft_target;

typedef struct pe_craft_ref {
    pe_key key;
    int32_t cls;    /* the reference's class id */
} pe_craft_ref;

/* One poisoning input made (per occurrence, in the order made). */
typedef struct pe_craft_made {
    pe_key key;
    uint32_t target; /* index into targets */
    uint32_t ref;    /* index into refs */
    uint8_t layout, target_first;
} pe_craft_made;

typedef struct pe_craft_summary {
    uint64_t total;    /* poisons made (sum of counts) */
    uint64_t distinct; /* distinct composites among them */
    uint64_t existed;  /* distinct composites already in the store before */
} pe_craft_summary;

/* Makes every poison in the write txn: for target i, targets[i].count
 * poisons with references of class targets[i].cls. Checks first, storing
 * nothing when any fails: every key exists, every target class has a
 * reference, channel counts agree. out has room for the sum of counts.
 * Each poison is stored with provenance (pe_prov, format PE_FORMAT_RAW;
 * src "pe-craft", ops "attack=... target=... reference=..."). With
 * o->distinct, a composite already made in this run is drawn again (up to
 * 64 attempts), then PE_EUSAGE. A composite over the pixel limit is
 * PE_EUNSUPPORTED. With o->perturb.crop, a target without more than
 * 2 x crop pixels a side is PE_EUSAGE (before anything is stored). With
 * o->distinct and a perturbation on, a poison whose perturbed target copy
 * was already placed in this run is drawn again too. A failed put is
 * returned (a full map is PE_ETOOBIG: pe_store_write grows the map and runs
 * the body again). */
int pe_craft_run(pe_txn *txn, const pe_craft_opts *o,
                 const pe_craft_target *targets, size_t nt,
                 const pe_craft_ref *refs, size_t nr, pe_craft_made *out,
                 pe_craft_summary *sum);

/* Writes the provenance ops line of one poison into buf (NUL-terminated,
 * truncated to n): space-separated KEY=VALUE fields,
 *   attack version seed target target_class reference layout order fit
 *   gap fill scale offset shift draw target_index poison_index
 * then, only when the option is on (records written before --size and
 * --perturb end at poison_index):
 *   size=WxH composite=WxH    the poison's size and the composite's before
 *                             the resize (--size)
 *   crop=L,T,R,B              pixels cropped off each edge
 *   resample=F resample_size=WxH   the factor and the size it gave
 *   color=+A or color=+A,+B,+C     the offsets (one on gray targets)
 *   jpeg=Q                    the quality of the round trip
 * The sizes and the channel count (which colour offsets applied) come from
 * sh (pe_compose_shape of the same draw). */
void pe_craft_describe(char *buf, size_t n, const pe_craft_opts *o,
                       const pe_key *target, int32_t cls,
                       const pe_key *ref, const pe_craft_draw *d,
                       uint32_t t, uint32_t j, const pe_craft_shape *sh);

/* One record pe_craft_describe wrote, parsed. A field the record lacks
 * keeps its default (0, or what the comment says): records from before
 * --size and --perturb parse as poisons made without them. */
typedef struct pe_craft_record {
    int version;            /* attack version; 0 when absent */
    uint64_t seed;
    int has_target, has_reference;
    pe_key target, reference;
    int32_t cls;            /* target class; -1 when absent */
    int layout;             /* PE_LAYOUT_LR or _TB; 0 when absent */
    int target_first;       /* 1 target-first, 0 reference-first, -1 absent */
    double scale;           /* 1 when absent */
    uint32_t off, shift;
    uint32_t target_index, poison_index;
    /* adaptive fields */
    uint32_t size_w, size_h;      /* the --size resize; 0 when none */
    uint32_t comp_w, comp_h;      /* the composite before it; 0 when none */
    int has_crop;
    uint32_t crop[4];             /* left, top, right, bottom */
    double resample;              /* 0 when none */
    uint32_t resample_w, resample_h;
    uint32_t n_color;             /* 0 (none), 1 (gray) or 3 */
    int32_t color[3];
    uint32_t jpeg;                /* quality; 0 when none */
} pe_craft_record;

/* Parses an ops line into *r. Fields it does not know are skipped (a later
 * version's records parse). Returns 0, or PE_EFORMAT with a message when the
 * record names another attack or a known field has a malformed value. */
int pe_craft_record_parse(const char *ops, pe_craft_record *r);

/* Whether an image's provenance records a pe-craft poison: returns 1 and,
 * when rec is not NULL, the first of its pe-craft records that parses
 * (rec->cls -1 and the defaults when none does); 0 for an image pe-craft
 * did not make. */
int pe_craft_provenance_record(const pe_info *info, pe_craft_record *rec);

/* The same for the target class only: when cls is not NULL, the target
 * class of the first record that names one (-1 when none does). The
 * readers of the records pe_craft_describe writes (pe-inject's rates,
 * pe-audit's --truth) go through these two and pe_craft_record_parse. */
int pe_craft_provenance(const pe_info *info, int32_t *cls);

/* Parsers of the options' words, PE_EUSAGE otherwise. */
int pe_layouts_parse(const char *s, unsigned *out);  /* "lr", "tb", "lr,tb" */
int pe_fit_parse(const char *s, pe_fit *out);        /* reference|target|smaller|larger */
const char *pe_fit_name(pe_fit f);
int pe_ref_draw_parse(const char *s, pe_ref_draw *out); /* uniform|round-robin */
/* "WxH" (sides 1..65535, at most PE_DEFAULT_MAX_PIXELS) or "same". */
int pe_craft_size_parse(const char *s, pe_craft_opts *o);
/* A comma-separated list of KIND=STRENGTH: resample=A (0 < A <= 0.9),
 * crop=N (1..4096), color=V (1..255), jpeg=Q (1..100), each kind once; the
 * kinds go into *p, which may hold earlier lists (a kind already on there
 * is an error too). */
int pe_perturb_parse(const char *s, pe_perturb *p);
/* Whether any perturbation is on. */
int pe_perturb_any(const pe_perturb *p);

#endif
