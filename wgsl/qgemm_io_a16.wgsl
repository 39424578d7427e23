// Operand loads of the weight-only quantized GEMM (A16) for f32 activations, K % 4 == 0:
// X [M, K] as vec4 rows, W decoded from its codes on load (qgemm_dec.wgsl). Plugs into the
// GEMM kernels that call load_x / load_w (gemm_reg.wgsl, qgemm_skinny.wgsl).
@group(0) @binding(1) var<storage, read> xs: array<DT4>;
@group(0) @binding(2) var<storage, read> codes: array<u32>;
@group(0) @binding(7) var<storage, read> wq: array<u32>;

fn load_x(row: u32, k4: u32) -> vec4<f32> { return vec4<f32>(xs[row * p.K4 + k4]); }
fn load_w(col: u32, k4: u32) -> vec4<f32> { return wdec4(col, k4); }
