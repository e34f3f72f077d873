/*
 * gemm.cu - the dense layers' and the k-NN scorer's matrix product,
 * C = alpha op(A) op(B) + beta C in row-major storage, through cuBLAS.
 *
 * Not for: convolutions (conv.cu), the losses' similarity matrices
 * (ntxent.cu, infonce.cu own theirs).
 *
 * Row-major C (M x N) is column-major C^T (N x M) = op(B)^T op(A)^T, so
 * the call swaps the operands and passes the row-major leading dimensions
 * unchanged. FP32 and TF32 call cublasSgemm under the math mode the
 * backend set (backend_cuda.cu); BF16 rounds A and B to bf16 copies (the
 * span each leading dimension covers) and calls cublasGemmEx with float
 * accumulation and a float C.
 */
#include "cuda.h"

/* Elements a rows x cols row-major operand with leading dimension ld
 * spans. */
static size_t span(int rows, int cols, int ld) {
    return rows > 0 && cols > 0 ? (size_t)(rows - 1) * ld + cols : 0;
}

int pe_cuda_gemm(pe_backend *b, int transA, int transB, int M, int N, int K, float alpha,
                 const float *A, int lda, const float *B, int ldb, float beta, float *C,
                 int ldc) {
    pe_cuda *g = pe_cuda_of(b);
    if (M == 0 || N == 0) return 0;
    const cublasOperation_t opA = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t opB = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (g->precision != PE_PREC_BF16)
        return pe_cuda_check_blas(cublasSgemm(g->blas, opB, opA, N, M, K, &alpha, B, ldb, A,
                                              lda, &beta, C, ldc),
                                  "gemm");
    /* A is M x K (K x M when transposed), B is K x N (N x K) */
    const size_t na = transA ? span(K, M, lda) : span(M, K, lda);
    const size_t nb = transB ? span(N, K, ldb) : span(K, N, ldb);
    __nv_bfloat16 *a = pe_cuda_bf16_scratch(b, pe_cuda_align_n(na) + nb);
    if (!a) return PE_ECUDA;
    __nv_bfloat16 *bb = a + pe_cuda_align_n(na);
    int rc;
    if ((rc = pe_cuda_to_bf16(b, na, A, a)) || (rc = pe_cuda_to_bf16(b, nb, B, bb))) return rc;
    return pe_cuda_check_blas(cublasGemmEx(g->blas, opB, opA, N, M, K, &alpha, bb, CUDA_R_16BF,
                                           ldb, a, CUDA_R_16BF, lda, &beta, C, CUDA_R_32F, ldc,
                                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                              "gemm (bf16)");
}
