// What the dense attention kernels (attention.wgsl, attention_tiled.wgsl,
// attention_chunked.wgsl) read: the launch params (runtime/ops/attention_launch.ts writes
// them), the operands and the output, and the horizontal max and sum of a vec4. IOT, the
// operands' element type, is DT, or DT4 where every layout is a multiple of 4 elements
// (attention_ld_vec4.wgsl: one vec4 load where the scalar form takes four).
// Keys past Tk and masked keys get the score bias INVALID; scores above LIVE come from valid
// keys, so their probability is computed, and every other one is exactly 0.
const INVALID: f32 = -1.0e30;
const LIVE: f32 = -1.0e29;

struct Params {
  tq: u32, tk: u32, mask_mode: u32, m_batch: u32,   // mask_mode: 0 none, 1 bias, 2 drop
  q_off: u32, q_row: u32, q_batch: u32, o_row: u32,
  k_off: u32, k_row: u32, k_batch: u32, o_batch: u32,
  v_off: u32, v_row: u32, v_batch: u32, scale_log2: f32,
  hd: u32, pad0: u32, pad1: u32, pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<IOT>;
@group(0) @binding(2) var<storage, read> k: array<IOT>;
@group(0) @binding(3) var<storage, read> v: array<IOT>;
@group(0) @binding(4) var<storage, read> mask: array<DT>;
@group(0) @binding(5) var<storage, read_write> out: array<IOT>;

fn hmax(a: vec4<f32>) -> f32 {
  return max(max(a.x, a.y), max(a.z, a.w));
}

fn hsum(a: vec4<f32>) -> f32 {
  return (a.x + a.y) + (a.z + a.w);
}
