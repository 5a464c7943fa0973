/**
 * The event schema: the one place the wall (and anything else in the browser or Node) reads
 * event field lists from. `events-schema.json` is generated from publishers/events.py
 * (`make schema`); a test keeps it current.
 */
import schema from "./events-schema.json" with { type: "json" };

const fieldOf = (kind, name) => schema.kinds[kind].fields.find((f) => f.name === name);

/** The whole schema: `kinds` (fields, history columns) and `filters` (filter key -> field and kinds). */
export const EVENT_SCHEMA = schema;
/** Columns of each kind in a history frame's `data`, e.g. `HISTORY_COLUMNS.signal`. */
export const HISTORY_COLUMNS = Object.freeze(
  Object.fromEntries(Object.entries(schema.kinds).map(([kind, spec]) => [kind, Object.freeze(spec.history)])),
);
/** The signal types (buy, sell, hold). */
export const SIGNAL_TYPES = Object.freeze(fieldOf("signal", "type").choices);
/** Subscription filter keys, in the server's order. */
export const FILTER_KEYS = Object.freeze(Object.keys(schema.filters));
