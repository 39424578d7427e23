// GEMM operand loads when K % 4 == 0: X [M, K] and W [N, K] bound as vec4 rows of K4 = K/4.
// The caller keeps k4 < K4 (or discards what it loads past it).
@group(0) @binding(1) var<storage, read> xs: array<DT4>;
@group(0) @binding(2) var<storage, read> ws: array<DT4>;

fn load_x(row: u32, k4: u32) -> vec4<f32> { return vec4<f32>(xs[row * p.K4 + k4]); }
fn load_w(col: u32, k4: u32) -> vec4<f32> { return vec4<f32>(ws[col * p.K4 + k4]); }

// The K step of version 3: one vec4; rows are addressed by their base (row_base) so the
// loop adds one index per load.
alias Op = vec4<f32>;
fn steps() -> u32 { return p.K4; }
fn row_base(row: u32) -> u32 { return row * p.K4; }
fn step_x(base: u32, s: u32) -> Op { return vec4<f32>(xs[base + s]); }
fn step_w(base: u32, s: u32) -> Op { return vec4<f32>(ws[base + s]); }
fn step_dot(a: Op, b: Op) -> f32 { return dot(a, b); }
