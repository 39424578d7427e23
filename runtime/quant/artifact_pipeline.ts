/**
 * A quantized artifact (runtime/quant/artifact.ts) loaded as a pipeline: the transformer
 * of its family (PixArt, or FLUX with the stored scheduler config) built with the plan's
 * linears, the attention plugin's self-attention when the plan has one, and the caption
 * encoder the artifact carries.
 *
 * @module
 */
import type { AttentionImpl } from "../../plugins/types.ts";
import {
  EmojiCaptionEncoder,
  parseEmojiEncoderConfig,
} from "../../plugins/models/emoji_encoder.ts";
import { EmojiTokenizer } from "../../plugins/models/emoji_tokenizer.ts";
import type { PixArtModel } from "../../plugins/models/pixart.ts";
import { loadPixArt } from "../../plugins/models/pixart_load.ts";
import type { FluxModel } from "../../plugins/models/flux.ts";
import { loadFlux } from "../../plugins/models/flux_load.ts";
import { parseFlowSchedulerConfig, parseFluxConfig } from "../../plugins/models/flux_config.ts";
import { parsePixArtConfig } from "../../plugins/models/pixart_config.ts";
import { CheckpointError } from "../errors.ts";
import type { Runtime } from "../gpu/device.ts";
import { Pipeline } from "../pipeline.ts";
import { checkDefaultSampler, pixArtSampling } from "../pipeline_load.ts";
import { parseJson } from "../io/json.ts";
import { FLUX_SAMPLING, parseSamplingDefaults, type SamplingDefaults } from "../model_defaults.ts";
import { type FlowEulerConfig, FLUX_FLOW_CONFIG } from "../sampling/flow_euler.ts";
import {
  DEFAULT_VP_SCHEDULERS,
  parseVpSchedulerConfig,
  type VpSchedulerConfigs,
} from "../sampling/vp_scheduler_config.ts";
import { type Artifact, META, openArtifact, type RotationLoader } from "./artifact.ts";

/** Options of {@linkcode loadArtifactPipeline}. */
export interface ArtifactPipelineOptions {
  /** Storage type of activations and FP weights; default f32. */
  dtype?: "f32" | "f16";
  /** Builds rotated layers' online transforms (when the plan has rotations). */
  rotations?: RotationLoader;
}

/** A pipeline loaded from an artifact: also frees the attention plugin's tensors. */
class ArtifactPipeline extends Pipeline {
  #attention: AttentionImpl | undefined;

  constructor(
    rt: Runtime,
    path: string,
    parts: {
      transformer: PixArtModel | FluxModel;
      defaults: SamplingDefaults;
      encoder?: EmojiCaptionEncoder;
      tokenizer?: EmojiTokenizer;
      attention?: AttentionImpl;
      scheduler?: FlowEulerConfig;
      schedulers?: VpSchedulerConfigs;
    },
  ) {
    super(
      rt,
      path,
      parts.transformer,
      parts.encoder,
      parts.tokenizer,
      parts.scheduler,
      parts.defaults,
      parts.schedulers,
    );
    this.#attention = parts.attention;
  }

  override release(): void {
    super.release();
    this.#attention?.release();
  }
}

/**
 * Loads an artifact as a pipeline: the transformer with the plan's linears, the attention
 * plugin's self-attention when the plan has one, and the caption encoder it carries.
 */
export async function loadArtifactPipeline(
  rt: Runtime,
  path: string,
  o: ArtifactPipelineOptions = {},
): Promise<Pipeline> {
  const a = await openArtifact(path);
  const dtype = o.dtype ?? "f32";
  try {
    const raw = a.transformerConfig as Record<string, unknown> | null;
    if (raw?._class_name === "FluxTransformer2DModel") return await loadFluxArtifact(rt, a, o);
    const config = parsePixArtConfig(a.transformerConfig, `${path} (${META.transformerConfig})`);
    const schedulers = artifactVpSchedulers(a);
    const defaults = artifactDefaults(a, pixArtSampling(schedulers));
    checkDefaultSampler(schedulers, defaults);
    const transformer = await loadPixArt(rt, a.transformerSource(), config, {
      dtype,
      linears: a.linears(dtype, o.rotations),
    });
    let attention: AttentionImpl | undefined;
    let encoder: EmojiCaptionEncoder | undefined;
    try {
      attention = await a.attention(rt);
      if (attention) transformer.selfAttention = attention;
      const m = a.file.metadata;
      if (m[META.encoderConfig] === undefined) {
        return new ArtifactPipeline(rt, path, { transformer, attention, defaults, schedulers });
      }
      const field = `__metadata__.${META.encoderConfig}`;
      const ecfgRaw = parseJson(m[META.encoderConfig], path, field);
      const vocab = parseJson(m[META.vocab] ?? "null", path, field);
      const ecfg = parseEmojiEncoderConfig(ecfgRaw, `${path} (${META.encoderConfig})`);
      if (!Array.isArray(vocab) || vocab.length !== ecfg.vocabSize) {
        throw new CheckpointError(
          path,
          `must be a list of ${ecfg.vocabSize} words`,
          `__metadata__.${META.vocab}`,
        );
      }
      const tokenizer = new EmojiTokenizer(vocab as string[], ecfg.maxLength, path);
      encoder = await EmojiCaptionEncoder.load(rt, a.encoderSource(), ecfg);
      return new ArtifactPipeline(rt, path, {
        transformer,
        encoder,
        tokenizer,
        attention,
        defaults,
        schedulers,
      });
    } catch (e) {
      transformer.release();
      attention?.release();
      encoder?.release();
      throw e;
    }
  } finally {
    a.close();
  }
}

/** A FLUX artifact: the quantized transformer, its attention plan and scheduler config. */
async function loadFluxArtifact(
  rt: Runtime,
  a: Artifact,
  o: ArtifactPipelineOptions,
): Promise<Pipeline> {
  const path = a.path;
  const dtype = o.dtype ?? "f32";
  const config = parseFluxConfig(a.transformerConfig, `${path} (${META.transformerConfig})`);
  const stext = a.file.metadata[META.schedulerConfig];
  let scheduler: FlowEulerConfig = { ...FLUX_FLOW_CONFIG };
  if (stext !== undefined) {
    const sraw = parseJson(stext, path, `__metadata__.${META.schedulerConfig}`);
    scheduler = parseFlowSchedulerConfig(sraw, `${path} (${META.schedulerConfig})`);
  }
  const defaults = artifactDefaults(a, FLUX_SAMPLING);
  const transformer = await loadFlux(rt, a.transformerSource(), config, {
    dtype,
    linears: a.linears(dtype, o.rotations),
  });
  let attention: AttentionImpl | undefined;
  try {
    attention = await a.attention(rt);
    if (attention) transformer.selfAttention = attention;
    return new ArtifactPipeline(rt, path, { transformer, attention, scheduler, defaults });
  } catch (e) {
    transformer.release();
    attention?.release();
    throw e;
  }
}

/** A PixArt artifact's stored scheduler config (its model folder's) as both samplers' configs. */
function artifactVpSchedulers(a: Artifact): VpSchedulerConfigs {
  const text = a.file.metadata[META.schedulerConfig];
  if (text === undefined) return DEFAULT_VP_SCHEDULERS;
  const field = `__metadata__.${META.schedulerConfig}`;
  return parseVpSchedulerConfig(parseJson(text, a.path, field), `${a.path} (${field})`);
}

/** The model's sampling defaults the artifact carries (its model_index.json), over `base`. */
function artifactDefaults(a: Artifact, base: SamplingDefaults): SamplingDefaults {
  const text = a.file.metadata[META.modelIndex];
  if (text === undefined) return base; // made before artifacts carried them, or a model without one
  const field = `__metadata__.${META.modelIndex}`;
  return parseSamplingDefaults(parseJson(text, a.path, field), `${a.path} (${field})`, base);
}
