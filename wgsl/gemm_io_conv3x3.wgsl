// GEMM operand loads for a 3×3, stride-1, zero-padded convolution on channels-last images
// (runtime/ops/conv.ts): X is the image [B, H, W, C] (C % 4 == 0) read as its im2col
// [B·H'·W', 9·C] without writing it — k = (ky·3 + kx)·C + c, H' = H << UP and W' = W << UP,
// the input read upsampled 2× by nearest neighbour when UP = 1 — and W [N, 9·C] as vec4
// rows. p.p0 = W, p.p1 = H << 1 | UP.
@group(0) @binding(1) var<storage, read> xs: array<DT4>;
@group(0) @binding(2) var<storage, read> ws: array<DT4>;

fn load_x(row: u32, k4: u32) -> vec4<f32> {
  let c4 = p.K4 / 9u;
  let tap = k4 / c4;
  let up = p.p1 & 1u;
  let w = p.p0;
  let h = p.p1 >> 1u;
  let wo = w << up;
  let ho = h << up;
  let img = row / (ho * wo);
  let pix = row % (ho * wo);
  let yy = i32(pix / wo) + i32(tap / 3u) - 1;
  let xx = i32(pix % wo) + i32(tap % 3u) - 1;
  if (yy < 0 || yy >= i32(ho) || xx < 0 || xx >= i32(wo)) { return vec4<f32>(0.0); }
  return vec4<f32>(xs[((img * h + (u32(yy) >> up)) * w + (u32(xx) >> up)) * c4 + k4 % c4]);
}
fn load_w(col: u32, k4: u32) -> vec4<f32> { return vec4<f32>(ws[col * p.K4 + k4]); }

// The K step of version 3: a row's base is the row itself (x's address needs its pixel).
alias Op = vec4<f32>;
fn steps() -> u32 { return p.K4; }
fn row_base(row: u32) -> u32 { return row; }
fn step_x(base: u32, s: u32) -> Op { return load_x(base, s); }
fn step_w(base: u32, s: u32) -> Op { return load_w(base, s); }
fn step_dot(a: Op, b: Op) -> f32 { return dot(a, b); }
