// The activation quantizer's arithmetic (METHODS.md §1), one copy for every kernel that
// quantizes: act_quant.wgsl and the fused rotate + quantize kernels (rotq_*.wgsl), so their
// scales and codes agree with each other and with runtime/reference/act_quant.ts. qmax is
// 2^(b−1) − 1 as an f32; codes are int8, four to a u32 word, little-endian.

// Symmetric (Δ, 1/Δ) of a row or group from its absmax: Δ = amax / qmax, 1/Δ = 0 when
// amax = 0 (every code 0).
fn sym_grid(amax: f32, qmax: f32) -> vec2<f32> {
  let delta = amax / qmax;
  return vec2<f32>(delta, select(0.0, 1.0 / delta, amax > 0.0));
}

// Asymmetric (Δ, 1/Δ, z) of a group from its min lo and max hi: 2^b levels from lo to hi,
// Δ = (hi − lo)/(2^b − 1), and x̂ = Δ·code + z with z = lo + 2^(b−1)·Δ.
fn asym_grid(lo: f32, hi: f32, qmax: f32) -> vec3<f32> {
  let delta = (hi - lo) / (2.0 * qmax + 1.0);
  return vec3<f32>(delta, select(0.0, 1.0 / delta, delta > 0.0), lo + (qmax + 1.0) * delta);
}

fn pack_i8(q: vec4<i32>) -> u32 {
  let b = vec4<u32>(q) & vec4<u32>(0xffu);
  return b.x | (b.y << 8u) | (b.z << 16u) | (b.w << 24u);
}

// Four symmetric codes: clamp(round(v·inv), −qmax − 1, qmax), round half to even.
fn pack_sym(v: vec4<f32>, inv: f32, qmax: f32) -> u32 {
  return pack_i8(vec4<i32>(clamp(round(v * inv), vec4<f32>(-qmax - 1.0), vec4<f32>(qmax))));
}

// Four asymmetric codes: clamp(round((v − lo)·inv), 0, 2^b − 1) − 2^(b−1), as int8.
fn pack_asym(v: vec4<f32>, lo: f32, inv: f32, qmax: f32) -> u32 {
  let u = clamp(round((v - vec4<f32>(lo)) * inv), vec4<f32>(0.0), vec4<f32>(2.0 * qmax + 1.0));
  return pack_i8(vec4<i32>(u - vec4<f32>(qmax + 1.0)));
}
