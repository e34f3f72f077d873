/*
 * test_dp.c - the privacy accounting (dp.h) against Google's dp_accounting
 * (PyPI dp-accounting 0.4), whose RdpAccountant given the integer orders
 * 2..256 printed the epsilons below:
 *
 *   acc = rdp.RdpAccountant(list(range(2, 257)))
 *   acc.compose(dp_accounting.PoissonSampledDpEvent(
 *       q, dp_accounting.GaussianDpEvent(sigma)), steps)
 *   acc.get_epsilon_and_optimal_order(delta)
 *
 * and the noise calibration (the sigma found reaches the epsilon, a
 * slightly smaller one does not).
 */
#include <math.h>

#include "check.h"
#include "dp.h"
#include "pe.h"

static const struct {
    double q, sigma;
    uint64_t steps;
    double delta, eps;
    int order;
} ref[] = {
    {0.0042666666666666669, 1.1, 14062, 1e-05, 2.5969811785948815, 8},
    {0.0042666666666666669, 1.1, 3515, 1e-05, 1.2811442759635217, 12},
    {0.051200000000000002, 1, 390, 1e-05, 7.7785121812578861, 3},
    {0.01, 2, 1000, 1e-06, 0.7827964235976046, 26},
    {0.1, 0.8, 100, 1e-05, 13.828010209476963, 2},
    {1, 5, 10, 1e-05, 2.8141091678455332, 8},
    {0.046545454545454543, 0.5, 429, 0.00018181818181818181, 54.355181242578624, 2},
};

static void test_against_dp_accounting(void) {
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++) {
        int order = 0;
        double e = pe_dp_epsilon(ref[i].q, ref[i].sigma, ref[i].steps, ref[i].delta, &order);
        CHECK(fabs(e - ref[i].eps) <= 1e-9 * ref[i].eps);
        CHECK(order == ref[i].order);
        if (fabs(e - ref[i].eps) > 1e-9 * ref[i].eps || order != ref[i].order)
            fprintf(stderr, "case %zu: eps %.17g order %d, want %.17g order %d\n", i, e, order,
                    ref[i].eps, ref[i].order);
    }
}

static void test_monotone(void) {
    /* more noise, fewer steps, a lower rate or a larger delta: less epsilon */
    double e = pe_dp_epsilon(0.05, 1.0, 400, 1e-5, NULL);
    CHECK(pe_dp_epsilon(0.05, 1.5, 400, 1e-5, NULL) < e);
    CHECK(pe_dp_epsilon(0.05, 1.0, 200, 1e-5, NULL) < e);
    CHECK(pe_dp_epsilon(0.02, 1.0, 400, 1e-5, NULL) < e);
    CHECK(pe_dp_epsilon(0.05, 1.0, 400, 1e-3, NULL) < e);
}

static void test_sigma_for(void) {
    const double q = 256.0 / 5000, d = 1e-5;
    const uint64_t T = 20 * (5000 / 256);
    double s;
    for (double eps = 1; eps <= 16; eps *= 2) {
        CHECK_OK(pe_dp_sigma_for(q, T, d, eps, &s));
        CHECK(pe_dp_epsilon(q, s, T, d, NULL) <= eps);
        CHECK(pe_dp_epsilon(q, s * 0.999, T, d, NULL) > eps);
    }
    /* the calibration and the forward agree with the reference case */
    CHECK_OK(pe_dp_sigma_for(ref[2].q, ref[2].steps, ref[2].delta, ref[2].eps, &s));
    CHECK(fabs(s - ref[2].sigma) <= 2e-4 * ref[2].sigma);
    /* an epsilon no noise reaches (q = 1, tiny delta, many steps, eps ~ 0) */
    CHECK_RC(pe_dp_sigma_for(1.0, 1000000, 1e-12, 1e-9, &s), PE_EUSAGE);
}

int main(void) {
    RUN(test_against_dp_accounting);
    RUN(test_monotone);
    RUN(test_sigma_for);
    return CHECK_DONE();
}
