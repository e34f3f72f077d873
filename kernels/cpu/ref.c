/*
 * ref.c - instantiates the scalar reference (ref_body.h) in float
 * (pe_ref_*) and in double (pe_refd_*). See ref.h.
 *
 * Not for: speed. Nothing here is threaded or vectorised on purpose.
 */
#include <stdlib.h>
#include <tgmath.h>

#include "pe.h"
#include "ref.h"

#define REAL float
#define REF(name) pe_ref_##name
#include "ref_body.h"
#undef REF
#undef REAL

#define REAL double
#define REF(name) pe_refd_##name
#include "ref_body.h"
#undef REF
#undef REAL
