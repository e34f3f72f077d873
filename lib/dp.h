/*
 * dp.h - privacy accounting for pe-train's differentially private
 * training (DP-SGD): the Renyi DP of the Poisson-subsampled Gaussian
 * mechanism composed over the steps, converted to (epsilon, delta), and
 * the noise multiplier that reaches a given epsilon.
 *
 * RDP at integer orders a = 2..256 (Mironov, Talwar and Zhang 2019):
 *   A_a = sum_{k=0..a} C(a,k) (1-q)^(a-k) q^k exp((k^2 - k) / (2 s^2)),
 *   rdp(a) = steps * log(A_a) / (a - 1),
 * summed in log space; the conversion to (epsilon, delta) is the one of
 * Canonne, Kamath and Steinke 2020 / Balle et al. 2020:
 *   eps = min_a rdp(a) + log((a-1)/a) - (log delta + log a) / (a - 1),
 * at least 0. These are the orders and the conversion of Google's
 * dp_accounting RdpAccountant given integer orders; tests/unit/test_dp.c
 * checks against values it printed.
 *
 * Not for: the clipping and noise themselves (train.c), or other
 * mechanisms.
 */
#ifndef PE_DP_H
#define PE_DP_H

#include <stdint.h>

#define PE_DP_MAX_ORDER 256

/* Epsilon after `steps` steps of sampling rate q (0 < q <= 1) and noise
 * multiplier sigma (> 0) at delta (0 < delta < 1); *order (may be NULL)
 * gets the order that gave it. INFINITY when no order gives a finite one. */
double pe_dp_epsilon(double q, double sigma, uint64_t steps, double delta, int *order);

/* The smallest noise multiplier (to 1e-4 relative) whose epsilon is at
 * most eps. Returns 0, or PE_EUSAGE (with a message) when none up to
 * 1e4 reaches it. */
int pe_dp_sigma_for(double q, uint64_t steps, double delta, double eps, double *sigma);

#endif
