// What Plotly does to gd.data for a TileModel plan: swap a trace, add traces, extendTraces
// (concatenate, then keep the last maxPoints). Extending an attribute that is not an array
// throws, as Plotly does.
import { extendInPlace } from "../../wall-model.js";

export function applyPlan(data, plan) {
  if (plan.swap) data[plan.swap.index] = plan.swap.trace;
  data.push(...plan.add);
  for (const group of plan.extend) extendInPlace(data, group);
}
