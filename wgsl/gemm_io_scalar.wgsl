// GEMM operand loads for any K: X [M, K] and W [N, K] bound as scalars; the 4-wide step
// k4 reads k = 4·k4 … 4·k4 + 3 and gives zero past K (the zero-padded tail).
@group(0) @binding(1) var<storage, read> xs: array<DT>;
@group(0) @binding(2) var<storage, read> ws: array<DT>;

fn ld_x(row: u32, k: u32) -> f32 { return select(0.0, f32(xs[row * p.K + k]), k < p.K); }
fn ld_w(col: u32, k: u32) -> f32 { return select(0.0, f32(ws[col * p.K + k]), k < p.K); }
fn load_x(row: u32, k4: u32) -> vec4<f32> {
  let k = k4 * 4u;
  return vec4<f32>(ld_x(row, k), ld_x(row, k + 1u), ld_x(row, k + 2u), ld_x(row, k + 3u));
}
fn load_w(col: u32, k4: u32) -> vec4<f32> {
  let k = k4 * 4u;
  return vec4<f32>(ld_w(col, k), ld_w(col, k + 1u), ld_w(col, k + 2u), ld_w(col, k + 3u));
}

// The K step of version 3: one (zero-padded) vec4.
alias Op = vec4<f32>;
fn steps() -> u32 { return p.K4; }
fn step_x(row: u32, s: u32) -> Op { return load_x(row, s); }
fn step_w(col: u32, s: u32) -> Op { return load_w(col, s); }
fn step_dot(a: Op, b: Op) -> f32 { return dot(a, b); }
