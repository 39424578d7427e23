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

// The K step of version 3: one (zero-padded) vec4; rows are addressed by their base.
alias Op = vec4<f32>;
fn steps() -> u32 { return p.K4; }
fn row_base(row: u32) -> u32 { return row * p.K; }
fn step_x(base: u32, s: u32) -> Op {
  let k = 4u * s;
  return vec4<f32>(select(0.0, f32(xs[base + k]), k < p.K), select(0.0, f32(xs[base + k + 1u]), k + 1u < p.K),
                   select(0.0, f32(xs[base + k + 2u]), k + 2u < p.K), select(0.0, f32(xs[base + k + 3u]), k + 3u < p.K));
}
fn step_w(base: u32, s: u32) -> Op {
  let k = 4u * s;
  return vec4<f32>(select(0.0, f32(ws[base + k]), k < p.K), select(0.0, f32(ws[base + k + 1u]), k + 1u < p.K),
                   select(0.0, f32(ws[base + k + 2u]), k + 2u < p.K), select(0.0, f32(ws[base + k + 3u]), k + 3u < p.K));
}
fn step_dot(a: Op, b: Op) -> f32 { return dot(a, b); }
