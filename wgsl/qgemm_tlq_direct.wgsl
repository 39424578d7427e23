// TLQ levels computed where they are decoded (qgemm_dec.wgsl MODE 5, with qgemm_tlq.wgsl),
// for kernels that cannot build a workgroup table first (the fused A16 GEMM: its main is
// gemm_reg.wgsl's). MODE 5 uses the hardware exp2 (1 f32 multiply and one exp2 a weight,
// cheaper than the exact integer 2^x in a hot tile load): levels within a few f32 ulps of
// the LUT.
fn tlq_build(r0: u32, rows: u32, lane: u32, lanes: u32) {}

fn tlq_w4(row: u32, c: vec4<u32>) -> vec4<f32> {
  let half = 1u << (BITS - 1u);
  let d = unpack2x16float(wq[2u * row]);
  let zw = wq[2u * row + 1u];
  let z = vec2<f32>(f32(i32(zw << 16u) >> 16u), f32(i32(zw) >> 16u));
  let eta = tlq_eta();
  let neg = c >= vec4<u32>(half);
  let dd = select(vec4<f32>(d.x), vec4<f32>(d.y), neg);
  let k = vec4<f32>(c & vec4<u32>(half - 1u)) + select(vec4<f32>(z.x), vec4<f32>(z.y), neg);
  let v = select(max(exp2(k * dd) - eta, vec4<f32>(0.0)), vec4<f32>(0.0), dd == vec4<f32>(0.0));
  return select(v, -v, neg);
}

// MODE 6 never takes this fragment (every integer kernel builds tables: decLibs refuses
// it); these only give qgemm_dec.wgsl's MODE 6 branches something to call.
fn tlq_i8(row: u32, c: vec4<u32>) -> u32 { return 0u; }

fn tlq_s(row: u32) -> f32 { return 0.0; }
