import type { GenerationParams, GenerationRequest } from "../diffusion/index.js";
import type { ProgressEvent } from "../events/progress-event.js";
import type {
  ConversationTurnValue,
  DiffugenStateValue,
  GeneratedImage,
  RunError,
} from "../../graphs/diffugen/state.js";

/** What a request asks of one graph run, validated and resolved (see JobRunner.prepare). */
export interface JobInput {
  mode: "image" | "chat";
  request: GenerationRequest;
  /** The registry name of the model the request resolved to. */
  model: string;
  /** Every parameter, decided once at admission (the seed drawn): the run draws with these. */
  params: GenerationParams;
  /** The client shows live previews (OpenAI's `partial_images`): only sd-cli writes them. */
  previews?: boolean | undefined;
  /** Image mode: let the LLM rewrite the prompt (default true). */
  refinePrompt?: boolean | undefined;
  /** Chat mode: the conversation before the request, oldest first. */
  messages?: ConversationTurnValue[] | undefined;
  /** Chat mode: the prompt of the previous picture, for "make it darker". */
  previousPrompt?: string | undefined;
}

/** The same, before validation: `request` is whatever an API dialect mapped its fields to. */
export interface RawJobInput extends Omit<JobInput, "request" | "model" | "params"> {
  request: Record<string, unknown>;
}

export type RefinedPromptValue = NonNullable<DiffugenStateValue["refined"]>;

/**
 * How a run answered the request. Known as soon as the answer is (the images are saved,
 * the reply is written, a node failed), which is before the LLM is back in VRAM: a client
 * never waits for Ollama.
 */
export type JobOutcome =
  | {
      kind: "images";
      images: GeneratedImage[];
      /** Registry name of the model that drew. */
      model: string;
      /** The prompt that drew: the LLM's refined one, or the user's own words. */
      prompt: string;
      negativePrompt: string;
      params: GenerationParams;
      refined: RefinedPromptValue | undefined;
      warnings: string[];
    }
  | { kind: "reply"; text: string; warnings: string[] }
  | { kind: "failed"; error: RunError; warnings: string[] }
  /** The client went away, or the server is shutting down. */
  | { kind: "cancelled"; reason: string };

/** LangGraph stream modes a caller can ask to see raw (POST /v1/graph/stream). */
export const graphStreamModes = ["updates", "custom", "values"] as const;
export type GraphStreamMode = (typeof graphStreamModes)[number];

/** Everything a run produced, seen in order. */
export type JobEvent =
  /**
   * A chunk of the graph's own stream, as LangGraph produced it, in one of the modes the
   * job was started with (`streamModes`); only then. Sent before the events made from it.
   */
  | { type: "chunk"; mode: GraphStreamMode; chunk: unknown }
  /**
   * A progress event from the graph's custom stream. `seq` is its number in the job's
   * stored stream (GET /v1/jobs/:id/events), usable as an SSE id that stream resumes from.
   */
  | { type: "progress"; event: ProgressEvent; seq: number }
  /** A node finished: what it changed, and the state as it stands after it. */
  | { type: "node"; node: string; update: Partial<DiffugenStateValue>; state: Partial<DiffugenStateValue> }
  /** The answer is known (sent once, before the run has finished); `seq` of the stored `end`. */
  | { type: "outcome"; outcome: JobOutcome; seq: number };

export interface JobResult {
  outcome: JobOutcome;
  /** The run's final state (as far as it got). */
  state: Partial<DiffugenStateValue>;
}

export interface Job {
  readonly id: string;
  /** Every event of the run, for one consumer; ends when the run ends. */
  readonly events: AsyncIterable<JobEvent>;
  /** Resolves as soon as the answer is known; never rejects. */
  readonly outcome: Promise<JobOutcome>;
  /** Resolves once the whole run is over (LLM reloaded, GPU free); never rejects. */
  readonly finished: Promise<JobResult>;
  /** Stops the run (sd-cli is killed, the GPU given back, the LLM reloaded). */
  cancel(reason?: string): void;
}

/** A request refused before anything ran: bad input, unknown model, queue full... */
export class JobRejectedError extends Error {
  constructor(
    readonly error: RunError,
    /** Set when waiting helps (queue full). */
    readonly retryAfterSeconds?: number,
  ) {
    super(error.message);
    this.name = "JobRejectedError";
  }
}
