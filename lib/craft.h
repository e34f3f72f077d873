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
 * Randomness: poison j of target t, attempt a, draws from the Philox stream
 * with key (seed, t) under PE_RNG_TAG_CRAFT and counters (j, a, 0), in this
 * order: layout (when both are allowed), order, reference (uniform draw),
 * then, when jitter or offsets apply, scale, offset, shift. A run is
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
} pe_craft_draw;

/* Draws poison j of target t (attempt a; attempts above 0 are the retries
 * of --distinct and always draw a scale and an offset, at least +-0.25 and
 * 4 pixels) among nrefs references. */
void pe_craft_draw_params(const pe_craft_opts *o, uint32_t t, uint32_t j,
                          uint32_t attempt, uint32_t nrefs, pe_craft_draw *d);

/* Builds the composite of target and ref (same channel count, else
 * PE_EUSAGE) into *out (empty; caller frees). PE_EUNSUPPORTED when it
 * would exceed PE_DEFAULT_MAX_PIXELS. */
int pe_compose(const pe_image *target, const pe_image *ref,
               const pe_craft_opts *o, const pe_craft_draw *d, pe_image *out);

/* Size of the composite without building it. */
int pe_compose_size(uint32_t tw, uint32_t th, uint32_t rw, uint32_t rh,
                    const pe_craft_opts *o, const pe_craft_draw *d,
                    uint32_t *w, uint32_t *h);

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
 * PE_EUNSUPPORTED. A failed put is returned (a full map is PE_ETOOBIG:
 * pe_store_write grows the map and runs the body again). */
int pe_craft_run(pe_txn *txn, const pe_craft_opts *o,
                 const pe_craft_target *targets, size_t nt,
                 const pe_craft_ref *refs, size_t nr, pe_craft_made *out,
                 pe_craft_summary *sum);

/* Writes the provenance ops line of one poison into buf (NUL-terminated,
 * truncated to n). */
void pe_craft_describe(char *buf, size_t n, const pe_craft_opts *o,
                       const pe_key *target, int32_t cls,
                       const pe_key *ref, const pe_craft_draw *d,
                       uint32_t t, uint32_t j);

/* Whether an image's provenance records a pe-craft poison: returns 1 and,
 * when cls is not NULL, the target class of the first record that names
 * one (-1 when none does); 0 for an image pe-craft did not make. The one
 * reader of the records pe_craft_describe writes (pe-inject's rates,
 * pe-audit's --truth). */
int pe_craft_provenance(const pe_info *info, int32_t *cls);

/* Parsers of the options' words, PE_EUSAGE otherwise. */
int pe_layouts_parse(const char *s, unsigned *out);  /* "lr", "tb", "lr,tb" */
int pe_fit_parse(const char *s, pe_fit *out);        /* reference|target|smaller|larger */
const char *pe_fit_name(pe_fit f);
int pe_ref_draw_parse(const char *s, pe_ref_draw *out); /* uniform|round-robin */

#endif
