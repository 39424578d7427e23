// qgemm_int.wgsl without a low-rank branch (LR4 stays 0): qgemm_int_lowrank.wgsl's names, no bindings.
override LR4: u32 = 0u;

fn lr_u(row: u32, r4: u32) -> vec4<f32> { return vec4<f32>(0.0); }
fn lr_b(col: u32, r4: u32) -> vec4<f32> { return vec4<f32>(0.0); }
