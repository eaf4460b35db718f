// Fused multi-step GRSN, forward and backward (BPTT through the surrogate), for CUDA.
//
// The same arithmetic as grsn_sj/_numba_kernels.py and grsn_sj.functional.grsn_step (spec §3):
//   F = sigmoid(a_f), I = relu(a_i), c = F c + (1 - F) I, h = beta v + (1 - beta) c,
//   s = Heaviside(h - thr) (fires at h >= thr), v = h - thr s (soft) or (1 - s) h + s v_reset.
// One thread per neuron (row n, neuron j), looping over T. Layout (C-contiguous):
//   x [T, M, 2H] = [forget | input] pre-activations, states [M, H], beta [H], mask [T, M]
//   (nonzero = the row's state goes back to (v_init, 0) before step t; v_init = v_reset if hard
//   else 0). Backward writes grad_x [T, M, 2H], grad_v0 / grad_c0 [M, H] and the per-element
//   grad_beta [M, H] (summed over t in the thread; the caller reduces over M with torch, so the
//   result is deterministic).
// Surrogates: sid 0 = ATan, 1 = Sigmoid (SpikingJelly's definitions); spiking = 0 emits the
// surrogate's primitive instead of the step (SpikingJelly's non-spiking mode).
//
// This file is also compiled by g++ through tests/cuda_harness/cuda_host.h, which defines the
// CUDA keywords and thread indices, so its arithmetic is checked on the CPU.

__device__ __forceinline__ float grsn_exp(float x) { return expf(x); }
__device__ __forceinline__ double grsn_exp(double x) { return exp(x); }
__device__ __forceinline__ float grsn_atan(float x) { return atanf(x); }
__device__ __forceinline__ double grsn_atan(double x) { return atan(x); }

template <typename T>
__device__ __forceinline__ T grsn_fire(T x, int sid, T alpha, int spiking) {
    const T one = T(1), pi = T(3.14159265358979323846);
    if (spiking) return x >= T(0) ? one : T(0);
    if (sid == 0) return grsn_atan(x * (alpha * (pi / (one + one)))) / pi + T(0.5);
    return one / (one + grsn_exp(-(x * alpha)));
}

template <typename T>
__device__ __forceinline__ T grsn_fire_grad(T x, int sid, T alpha) {
    const T one = T(1), pi = T(3.14159265358979323846);
    if (sid == 0) {
        const T a = alpha / (one + one);
        const T ax = a * x * pi;
        return a / (one + ax * ax);
    }
    const T sg = one / (one + grsn_exp(-(x * alpha)));
    return (one - sg) * sg * alpha;
}

template <typename T>
__device__ __forceinline__ void grsn_forward_impl(
        const T* x, const T* v0, const T* c0, const T* beta, const T* mask, int has_mask,
        int n_steps, int rows, int hidden, T thr, T v_reset, int hard, int sid, T alpha,
        int spiking, T* spike, T* h_seq, T* c_seq, T* v_out, T* c_out) {
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= rows * hidden) return;
    const int n = idx / hidden, j = idx % hidden;
    const T one = T(1), zero = T(0);
    const T b = beta[j];
    const T v_init = hard ? v_reset : zero;
    T v = v0[idx], c = c0[idx];
    for (int t = 0; t < n_steps; ++t) {
        if (has_mask && mask[t * rows + n] != zero) {
            v = v_init;
            c = zero;
        }
        const long xo = ((long)t * rows + n) * 2 * hidden;
        const T f = one / (one + grsn_exp(-x[xo + j]));
        const T ai = x[xo + hidden + j];
        const T i = ai > zero ? ai : zero;
        c = f * c + (one - f) * i;
        const T h = b * v + (one - b) * c;
        const T s = grsn_fire(h - thr, sid, alpha, spiking);
        v = hard ? (one - s) * h + s * v_reset : h - thr * s;
        const long o = ((long)t * rows + n) * hidden + j;
        spike[o] = s;
        h_seq[o] = h;
        c_seq[o] = c;
    }
    v_out[idx] = v;
    c_out[idx] = c;
}

template <typename T>
__device__ __forceinline__ void grsn_backward_impl(
        const T* g_spike, const T* g_h, const T* g_c, const T* g_v, const T* g_cT, const T* x,
        const T* v0, const T* c0, const T* beta, const T* mask, int has_mask, const T* h_seq,
        const T* c_seq, int n_steps, int rows, int hidden, T thr, T v_reset, int hard,
        int detach_reset, int sid, T alpha, int spiking, T* gx, T* gv0, T* gc0, T* gbeta) {
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= rows * hidden) return;
    const int n = idx / hidden, j = idx % hidden;
    const T one = T(1), zero = T(0);
    const T b = beta[j];
    const T v_init = hard ? v_reset : zero;
    T gv = g_v[idx], gc = g_cT[idx], gb = zero;
    for (int t = n_steps - 1; t >= 0; --t) {
        const bool reset = has_mask && mask[t * rows + n] != zero;
        const long o = ((long)t * rows + n) * hidden + j;
        const T h = h_seq[o], c = c_seq[o];
        T vp, cp;
        if (reset) {
            vp = v_init;
            cp = zero;
        } else if (t == 0) {
            vp = v0[idx];
            cp = c0[idx];
        } else {
            const long op = o - (long)rows * hidden;
            const T hp = h_seq[op];
            const T sp = grsn_fire(hp - thr, sid, alpha, spiking);
            vp = hard ? (one - sp) * hp + sp * v_reset : hp - thr * sp;
            cp = c_seq[op];
        }
        const T s = grsn_fire(h - thr, sid, alpha, spiking);
        const T sg = grsn_fire_grad(h - thr, sid, alpha);
        const T dvdh = hard ? one - s : one;
        const T dvds = detach_reset ? zero : (hard ? v_reset - h : -thr);
        const T gs = g_spike[o] + gv * dvds;
        const T gh = g_h[o] + gv * dvdh + gs * sg;
        const T gct = g_c[o] + gc + gh * (one - b);
        gb += gh * (vp - c);
        const long xo = ((long)t * rows + n) * 2 * hidden;
        const T f = one / (one + grsn_exp(-x[xo + j]));
        const T ai = x[xo + hidden + j];
        const T i = ai > zero ? ai : zero;
        gx[xo + j] = gct * (cp - i) * f * (one - f);
        gx[xo + hidden + j] = ai > zero ? gct * (one - f) : zero;
        if (reset) {
            gv = zero;
            gc = zero;
        } else {
            gv = gh * b;
            gc = gct * f;
        }
    }
    gv0[idx] = gv;
    gc0[idx] = gc;
    gbeta[idx] = gb;
}

#define GRSN_KERNELS(T, SUFFIX)                                                                  \
    extern "C" __global__ void grsn_forward_##SUFFIX(                                            \
            const T* x, const T* v0, const T* c0, const T* beta, const T* mask, int has_mask,    \
            int n_steps, int rows, int hidden, T thr, T v_reset, int hard, int sid, T alpha,     \
            int spiking, T* spike, T* h_seq, T* c_seq, T* v_out, T* c_out) {                     \
        grsn_forward_impl<T>(x, v0, c0, beta, mask, has_mask, n_steps, rows, hidden, thr,       \
                             v_reset, hard, sid, alpha, spiking, spike, h_seq, c_seq, v_out,     \
                             c_out);                                                             \
    }                                                                                            \
    extern "C" __global__ void grsn_backward_##SUFFIX(                                           \
            const T* g_spike, const T* g_h, const T* g_c, const T* g_v, const T* g_cT,           \
            const T* x, const T* v0, const T* c0, const T* beta, const T* mask, int has_mask,    \
            const T* h_seq, const T* c_seq, int n_steps, int rows, int hidden, T thr,            \
            T v_reset, int hard, int detach_reset, int sid, T alpha, int spiking, T* gx,        \
            T* gv0, T* gc0, T* gbeta) {                                                          \
        grsn_backward_impl<T>(g_spike, g_h, g_c, g_v, g_cT, x, v0, c0, beta, mask, has_mask,    \
                              h_seq, c_seq, n_steps, rows, hidden, thr, v_reset, hard,           \
                              detach_reset, sid, alpha, spiking, gx, gv0, gc0, gbeta);           \
    }

GRSN_KERNELS(float, f32)
GRSN_KERNELS(double, f64)
