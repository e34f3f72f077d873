/*
 * dp.c - RDP accounting of the subsampled Gaussian mechanism (dp.h).
 *
 * Not for: anything of training itself.
 */
#include "dp.h"

#include <math.h>

#include "pe.h"

static double log_add(double a, double b) {
    if (a == -INFINITY) return b;
    if (b == -INFINITY) return a;
    const double m = a > b ? a : b;
    return m + log1p(exp(-fabs(a - b)));
}

/* log A_a for integer a >= 2 */
static double log_a(double q, double sigma, int a) {
    if (q >= 1.0) return (double)a * (a - 1) / (2 * sigma * sigma);
    const double lq = log(q), l1q = log1p(-q);
    double s = -INFINITY;
    for (int k = 0; k <= a; k++) {
        const double lbin = lgamma(a + 1.0) - lgamma(k + 1.0) - lgamma(a - k + 1.0);
        s = log_add(s, lbin + k * lq + (a - k) * l1q + ((double)k * k - k) / (2 * sigma * sigma));
    }
    return s;
}

double pe_dp_epsilon(double q, double sigma, uint64_t steps, double delta, int *order) {
    double best = INFINITY;
    int at = 0;
    for (int a = 2; a <= PE_DP_MAX_ORDER; a++) {
        const double rdp = (double)steps * log_a(q, sigma, a) / (a - 1);
        double eps = rdp + log((a - 1.0) / a) - (log(delta) + log((double)a)) / (a - 1);
        if (eps < 0) eps = 0;
        if (eps < best) {
            best = eps;
            at = a;
        }
    }
    if (order) *order = at;
    return best;
}

int pe_dp_sigma_for(double q, uint64_t steps, double delta, double eps, double *sigma) {
    double lo = 1e-2, hi = 1e4;
    if (pe_dp_epsilon(q, hi, steps, delta, NULL) > eps)
        return pe_fail(PE_EUSAGE, "no noise multiplier up to %g reaches epsilon %g "
                       "(delta %g, %llu steps, sampling rate %g)", hi, eps, delta,
                       (unsigned long long)steps, q);
    if (pe_dp_epsilon(q, lo, steps, delta, NULL) <= eps) {
        *sigma = lo;
        return 0;
    }
    while (hi - lo > 1e-4 * hi) { /* epsilon falls as sigma grows */
        const double mid = sqrt(lo * hi);
        if (pe_dp_epsilon(q, mid, steps, delta, NULL) <= eps) hi = mid;
        else lo = mid;
    }
    *sigma = hi;
    return 0;
}
