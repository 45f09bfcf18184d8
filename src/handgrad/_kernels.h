/* The elementwise kernels of the compiled step (issue 26): plain C99, built into the
 * extension handgrad._fused beside _fused.pyx (setup.py), called from Cython.
 *
 * Every kernel comes in a float (_f) and a double (_d) variant. Arrays are C-contiguous,
 * row-major, and never overlap one another (the definitions declare them restrict);
 * sizes are element counts. Each kernel performs the operations of the engine it
 * replaces (handgrad.optim, handgrad.workspace, the loops of _fused.pyx) in the same
 * order and dtype, so that its results are theirs bit for bit — except the softmax's
 * exp, a vectorised one of _kernels.c (within about 1 ulp of the correctly rounded
 * value, as NumPy's own SIMD exp and libm's are, each differing in the last bits), and
 * the same bits on every target.
 *
 * On x86-64 Linux with GCC or clang each kernel is compiled for AVX-512, AVX2 and the
 * baseline, and the loader picks one for the CPU at hand (target_clones).
 */
#ifndef HANDGRAD_KERNELS_H
#define HANDGRAD_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Z (n, cols) <- Z + b, b (cols,) added to every row (after Z = A W by BLAS: the order
 * of scikit-learn's A W + b). */
void hg_add_bias_f(float *Z, const float *b, ptrdiff_t n, ptrdiff_t cols);
void hg_add_bias_d(double *Z, const double *b, ptrdiff_t n, ptrdiff_t cols);

/* Z <- ReLU(Z + b) = (Z + b) * [Z + b > 0], in one pass (hg_add_bias, then hg_relu). */
void hg_add_bias_relu_f(float *Z, const float *b, ptrdiff_t n, ptrdiff_t cols);
void hg_add_bias_relu_d(double *Z, const double *b, ptrdiff_t n, ptrdiff_t cols);

/* dA (n, cols) <- dA * [A > 0] in place (a multiply: inf or NaN times 0 is NaN), and
 * db (cols,) <- the column sums of the result, each over rows 0..n-1 in order. */
void hg_relu_grad_f(float *dA, const float *A, ptrdiff_t n, ptrdiff_t cols, float *db);
void hg_relu_grad_d(double *dA, const double *A, ptrdiff_t n, ptrdiff_t cols, double *db);

/* out (cols,) <- the column sums of dZ (n, cols), each over rows 0..n-1 in order. */
void hg_column_sums_f(const float *dZ, ptrdiff_t n, ptrdiff_t cols, float *out);
void hg_column_sums_d(const double *dZ, ptrdiff_t n, ptrdiff_t cols, double *out);

/* ||W||^2 in double over 8 running sums acc[k % 8] (the size % 8 tail into acc[0]),
 * combined as ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)). */
double hg_sqnorm_f(const float *W, ptrdiff_t size);
double hg_sqnorm_d(const double *W, ptrdiff_t size);

/* Softmax cross-entropy of the scores S (n, C) against the classes y (n,): per row i,
 * labels[i] = the first argmax (a row with a NaN: its first NaN's index), m = S[i,
 * labels[i]], e_j = exp(S_ij - m), total = sum_j e_j (j ascending), dS_ij = e_j * (c /
 * total) then dS[i, y_i] -= c, losses[i] = log(total) - (S[i, y_i] - m), all in the
 * dtype; returns sum_i losses[i], accumulated in double (i ascending). */
double hg_softmax_xent_f(const float *S, float *dS, float *losses, int64_t *labels,
                         const int64_t *y, ptrdiff_t n, ptrdiff_t C, double c);
double hg_softmax_xent_d(const double *S, double *dS, double *losses, int64_t *labels,
                         const int64_t *y, ptrdiff_t n, ptrdiff_t C, double c);

/* handgrad.optim.Adam.update of one parameter (size,): m <- b1 m + (1 - b1) g;
 * v <- b2 v + (1 - b2) g^2; theta <- theta - lr_t m / (sqrt(v) + eps). */
void hg_adam_f(float *theta, const float *g, float *m, float *v, ptrdiff_t size,
               double lr_t, double b1, double b2, double eps);
void hg_adam_d(double *theta, const double *g, double *m, double *v, ptrdiff_t size,
               double lr_t, double b1, double b2, double eps);

/* handgrad.optim.SGD.update with momentum mu of one parameter (size,): v <- mu v - lr g;
 * theta <- theta + v, or with nesterov theta <- theta + (mu v - lr g). */
void hg_momentum_f(float *theta, const float *g, float *v, ptrdiff_t size, double lr,
                   double mu, int nesterov);
void hg_momentum_d(double *theta, const double *g, double *v, ptrdiff_t size, double lr,
                   double mu, int nesterov);

/* dW <- dW + W * reg (the penalty's gradient added: dW = A^T dZ + lambda W), reg in T. */
void hg_add_scaled_f(float *dW, const float *W, ptrdiff_t size, double reg);
void hg_add_scaled_d(double *dW, const double *W, ptrdiff_t size, double reg);

/* A batch's rows: for i < n, r = positions[i], or rows[positions[i]] where rows is not
 * NULL; dst[i, :] <- X[r, :] (X and dst have D columns) and, where targets is not NULL,
 * t[i] <- targets[r]. */
void hg_gather_rows_f(float *dst, int64_t *t, const float *X, const int64_t *targets,
                      const int64_t *positions, const int64_t *rows, ptrdiff_t n, ptrdiff_t D);
void hg_gather_rows_d(double *dst, int64_t *t, const double *X, const int64_t *targets,
                      const int64_t *positions, const int64_t *rows, ptrdiff_t n, ptrdiff_t D);

#ifdef __cplusplus
}
#endif

#endif /* HANDGRAD_KERNELS_H */
