// Types for signalpush.js — the client for the signalpush websocket protocol v1 (docs/client.md).

export declare const PROTOCOL_VERSION: 1;
export declare const FILTER_KEYS: readonly [
  "kinds",
  "bots",
  "strategies",
  "signal_types",
  "min_confidence",
  "sides",
];

export type Kind = "signal" | "trade" | "candle" | "bot";
export type ConnectionState = "connecting" | "live" | "stale" | "down" | "closed";
export type SubscriptionState = "pending" | "live" | "failed" | "closed";

export interface Filter {
  kinds?: Kind[];
  bots?: string[];
  strategies?: string[];
  signal_types?: Array<"buy" | "sell" | "hold">;
  /** Inclusive: signals with confidence >= min_confidence. */
  min_confidence?: number;
  sides?: Array<"buy" | "sell">;
}

export interface HistoryRequest {
  minutes?: number;
  /** Caps candles (downsampled to OHLCV buckets); signals and trades are never downsampled. */
  max_points?: number;
  /** Ask the server for its Plotly figure payload in the history frame (the wall does). */
  figure?: boolean;
}

export interface SubscribeSpec {
  symbol: string;
  filter?: Filter;
  history?: HistoryRequest;
}

interface BaseEvent {
  seq: number;
  kind: Kind;
  symbol: string;
  /** Event time, ms since the Unix epoch (UTC); for candles the open time. */
  ts: number;
  meta?: Record<string, unknown>;
}
export interface SignalEvent extends BaseEvent {
  kind: "signal";
  bot: string;
  strategy: string;
  type: "buy" | "sell" | "hold";
  price: number;
  confidence: number;
}
export interface TradeEvent extends BaseEvent {
  kind: "trade";
  bot: string;
  strategy: string;
  side: "buy" | "sell";
  action: "entry" | "exit";
  price: number;
  qty: number;
  fee: number;
  pnl: number | null;
  position: string;
}
export interface CandleEvent extends BaseEvent {
  kind: "candle";
  tf: string;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
}
export interface BotEvent extends BaseEvent {
  kind: "bot";
  bot: string;
  strategy: string;
  status: "active" | "paused" | "stopped" | "error";
  equity: number | null;
}
export type SignalPushEvent = SignalEvent | TradeEvent | CandleEvent | BotEvent;

export interface HelloFrame {
  op: "hello";
  protocol: number;
  server: string;
  heartbeat_s: number;
  /** host:pid of the gateway process the connection reached. */
  instance?: string;
}
export interface SubscribedFrame {
  op: "subscribed";
  /** Echoed exactly as sent (a number stays a number). */
  ref?: string | number;
  sub: string;
  symbol: string;
  epoch: string | null;
  seq: number;
  /** The canonical filter: what makes two subscriptions the same (docs/protocol.md). */
  filter?: Record<string, unknown>;
  /** True when this subscribe replaced the connection's subscription with that symbol and filter. */
  replaced?: boolean;
}
/** A piece of a frame over the server's max_send_frame_bytes; the client joins them itself. */
export interface ChunkFrame {
  op: "chunk";
  id: number;
  index: number;
  count: number;
  data: string;
}
export interface HistoryFrame {
  op: "history";
  sub: string;
  symbol: string;
  epoch: string | null;
  reset: boolean;
  to_seq: number;
  data: {
    candle?: {
      ts: number[];
      open: number[];
      high: number[];
      low: number[];
      close: number[];
      volume: number[];
    };
    signal?: {
      seq: number[];
      ts: number[];
      bot: string[];
      strategy: string[];
      type: string[];
      price: number[];
      confidence: number[];
    };
    trade?: {
      seq: number[];
      ts: number[];
      bot: string[];
      strategy: string[];
      side: string[];
      action: string[];
      price: number[];
      qty: number[];
      pnl: Array<number | null>;
      position: string[];
    };
  };
  truncated?: boolean;
  /** Present when the subscribe asked `history.figure`; see docs/client.md "Figure contract". */
  figure?: FigurePayload;
  [key: string]: unknown;
}
export interface EventsFrame {
  op: "events";
  sub: string;
  symbol: string;
  epoch: string;
  from_seq: number;
  to_seq: number;
  items: SignalPushEvent[];
}
export interface ResetFrame {
  op: "reset";
  sub: string;
  symbol: string;
  reason: string;
}
export interface StatusFrame {
  op: "status";
  bus: "up" | "down";
  time: number;
}
export interface ErrorFrame {
  op: "error";
  ref?: string | number;
  code: "bad_request" | "unauthorized" | "forbidden" | "too_many" | "rate_limited" | "internal" | string;
  message: string;
}

export interface FigurePayload {
  figure: { data: Array<Record<string, unknown>>; layout: Record<string, unknown> };
  /** "candle" | "price" | "signal:<strategy>:<type>" | "trade:entry" | "trade:exit" | "trade_line:win" | "trade_line:loss" | "equity:<bot>" → trace index */
  trace_map: Record<string, number>;
  live?: Record<string, unknown>;
  kpis?: Record<string, unknown>;
}

export interface StateInfo {
  /** Close code of the connection that ended ("down"). */
  code?: number;
  reason?: string;
  /** Why the server refused: "unauthorized" (4001, HTTP 401), "token expired" (4003), "forbidden" (HTTP 403: Origin). */
  auth?: string;
  /** Delay before the next connection attempt ("down"). */
  retryInMs?: number;
  attempt?: number;
  /** How long the server has been silent ("stale"). */
  silentMs?: number;
  server?: string;
  recovered?: boolean;
}

export interface ClientOptions {
  /** Sent as ?token=… on the websocket URL (browsers cannot set headers on websockets). */
  token?: string | null;
  /** A WebSocket constructor; required in Node < 22 (e.g. `import WebSocket from "ws"`). */
  WebSocket?: unknown;
  /** Reconnect delays: full jitter, uniform in [0, min(maxMs, initialMs·2^attempt)). Default 500 / 20000. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** No frame from the server for this long → "stale" (default 30000). The client pings to keep a healthy link talking. */
  staleAfterMs?: number;
  /** No frame for this long → give up on the socket and reconnect (default 2 × staleAfterMs). */
  deadAfterMs?: number;
  /** Ping interval (default min(heartbeat_s from hello, staleAfterMs / 3)). */
  pingIntervalMs?: number;
  /** No hello this long after connecting → reconnect (default 10000). */
  helloTimeoutMs?: number;
  /** A connection live this long resets the backoff (default 5000). */
  stableAfterMs?: number;
  /** Retry delay after an auth refusal or a protocol mismatch, ± jitter (default 60000). */
  authRetryMs?: number;
  /** Random source in [0, 1) for the jitter (tests). */
  random?: () => number;
  onState?: (state: ConnectionState, info: StateInfo) => void;
  /** Bus status frames: {bus: "up" | "down"}. */
  onStatus?: (frame: StatusFrame) => void;
  /** Frames of ops the client does not handle itself (a wall's `command` frames, docs/walls.md). */
  onFrame?: (frame: { op: string; [key: string]: unknown }) => void;
  /** Bad frames, handler exceptions, server errors not tied to a subscription. Never fatal. */
  onError?: (error: Error) => void;
}

export interface SubscriptionHandlers {
  /** A history backfill: on subscribe (when asked), after a reset, on reload. Replace your state with it. */
  onHistory?: (frame: HistoryFrame) => void;
  /** New items only, in seq order, each exactly once; `items` may be empty (the position moved). */
  onEvents?: (items: SignalPushEvent[], frame: EventsFrame) => void;
  /** The server lost this subscription's state (new epoch); a fresh onHistory follows. */
  onReset?: (frame: ResetFrame) => void;
  onSubscribed?: (frame: SubscribedFrame) => void;
  /** A subscribe error frame; forbidden / bad_request / unauthorized make the subscription "failed". */
  onError?: (error: ErrorFrame) => void;
}

export declare class Subscription {
  readonly spec: Readonly<{ symbol: string; filter: Filter; history: HistoryRequest | null }>;
  readonly symbol: string;
  /** The server's group id (`subscribed.sub`); shared by subscriptions with the same symbol + filter. */
  readonly id: string | null;
  readonly epoch: string | null;
  /** The position: history.to_seq / subscribed.seq, then each in-order frame's to_seq; null while unknown. */
  readonly lastSeq: number | null;
  /** Date.now() of the last history or events frame (empty ones too); null before the first. */
  readonly lastEventAt: number | null;
  readonly state: SubscriptionState;
  readonly error: ErrorFrame | null;
  unsubscribe(): void;
  /** Re-subscribe now with a fresh history (every subscription sharing the group gets onHistory). */
  reload(): void;
}

export declare class SignalPushClient {
  constructor(url: string, options?: ClientOptions);
  readonly url: string;
  readonly state: ConnectionState;
  /** The last hello frame. */
  readonly server: HelloFrame | null;
  /** From the last status frame; null before one arrived. */
  readonly busUp: boolean | null;
  readonly rttMs: number | null;
  /** Server clock minus local clock, from pongs. */
  readonly clockOffsetMs: number | null;
  readonly stats: {
    connects: number;
    frames: number;
    badFrames: number;
    breaks: number;
    resets: number;
    resumes: number;
    duplicatesDropped: number;
    handlerErrors: number;
  };
  readonly subscriptions: Subscription[];
  subscribe(spec: SubscribeSpec, handlers?: SubscriptionHandlers): Subscription;
  /** Replay a past window through the live protocol (docs/client.md, "Replay"). */
  replay(spec: ReplaySpec, handlers?: ReplayHandlers): Replay;
  ping(timeoutMs?: number): Promise<{ rttMs: number; serverTime: number }>;
  /** Send a frame the client does not manage (a wall's `display` heartbeat); false when not connected. */
  send(frame: { op: string; [key: string]: unknown }): boolean;
  /** The live signal-quality stream (docs/protocol.md, "perf"). */
  perf(spec?: PerfSpec, handlers?: PerfHandlers): PerfFeed;
  close(): void;
}

/** A row of the perf stream: GET /api/signal-quality's group row (docs/analytics.md). */
export interface QualityRow {
  bot: string;
  strategy: string;
  signals: number;
  linked: number;
  hit_rate: number | null;
  expectancy: number | null;
  unrealised_pnl: number;
  equity: number;
  calibration: Array<{
    bucket: number;
    confidence_low: number;
    confidence_high: number;
    signals: number;
    resolved: number;
    hit_rate: number | null;
    hit_rate_low: number | null;
    hit_rate_high: number | null;
    mean_pnl: number | null;
  }>;
  [metric: string]: unknown;
}
export interface PerfSpec {
  bots?: string[];
  strategies?: string[];
}
export interface PerfHandlers {
  onRows?(rows: QualityRow[], frame: { op: "perf"; full: boolean; time: number; rows: QualityRow[] }): void;
  onError?(frame: { op: "error"; code: string; message: string }): void;
}
export interface PerfFeed {
  readonly rows: Map<string, QualityRow>;
  close(): void;
}

export declare function backoffDelay(
  attempt: number,
  backoff?: { initialMs?: number; maxMs?: number },
  random?: () => number,
): number;
export declare function canonicalFilter(filter?: Filter | null): Filter;
export declare function subscriptionKey(symbol: string, filter?: Filter | null): string;
export declare function checkEventsFrame(
  position: { epoch: string | null; lastSeq: number },
  frame: Pick<EventsFrame, "from_seq" | "to_seq" | "items"> & { epoch?: string | null },
):
  | { ok: true; items: SignalPushEvent[]; dropped: number; epoch: string | null; lastSeq: number }
  | { ok: false; reason: "gap" | "epoch" };

// ---- replay (the flight recorder; signalpush-replay.js) ----------------------------------

/** A time: ms since the Unix epoch, a Date, or an ISO 8601 text ("2026-12-03T03:00:00Z"). */
export type TimeLike = number | Date | string;
/** 0.1..1000 × the recorded pace, or "max" (as fast as the connection takes it). */
export type ReplaySpeed = number | "max";

export interface ReplaySpec extends SubscribeSpec {
  from: TimeLike;
  /** Inclusive end, or "live" (default): hand over to the live stream at the live edge. */
  to?: TimeLike | "live";
  speed?: ReplaySpeed;
}

export interface ReplayFrame {
  op: "replay";
  sub: string;
  symbol: string;
  state: "playing" | "paused" | "seek" | "speed" | "end" | "live";
  /** The recorded time being played (ms). */
  time: number;
  speed: ReplaySpeed;
  /** state "live": the position the live subscription resumes from. */
  epoch?: string | null;
  seq?: number;
  /** Other states while paused. */
  paused?: boolean;
  ref?: string | number;
}

export interface ReplayHandlers extends SubscriptionHandlers {
  /** Every replay frame (started, paused, resumed, seek, speed, end, live). */
  onState?: (frame: ReplayFrame) => void;
  /** The replay became a live subscription (the handover at the live edge, or goLive()). */
  onLive?: (frame: ReplayFrame | { op: "replay"; state: "live"; sub: string | null; symbol: string }) => void;
}

export declare class Replay {
  readonly symbol: string;
  readonly filter: Filter;
  readonly from: number;
  readonly to: number | "live";
  readonly speed: ReplaySpeed;
  readonly state: "pending" | "playing" | "paused" | "ended" | "live" | "failed" | "closed";
  /** The server's id: "r…" while replaying, the live subscription's after the handover. */
  readonly id: string | null;
  readonly epoch: string | null;
  readonly lastSeq: number | null;
  readonly error: ErrorFrame | null;
  /** The recorded time being played now (ms), extrapolated between frames. */
  readonly time: number;
  pause(): void;
  resume(): void;
  /** Jump to a time; a fresh onHistory at that time follows, then the events from there. */
  seek(t: TimeLike): void;
  setSpeed(speed: ReplaySpeed): void;
  /** Leave the replay for the live stream now (onLive, then a fresh onHistory and live events). */
  goLive(): void;
  close(): void;
}

export declare function toMillis(value: TimeLike): number;
