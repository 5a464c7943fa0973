// What Plotly does to gd.data for a TileModel plan: swap a trace, add traces, extendTraces
// (concatenate, then keep the last maxPoints). Extending an attribute that is not an array
// throws, as Plotly does.

export function applyPlan(data, plan) {
  if (plan.swap) data[plan.swap.index] = plan.swap.trace;
  data.push(...plan.add);
  for (const { update, indices, maxPoints } of plan.extend) {
    indices.forEach((index, j) => {
      for (const [attr, values] of Object.entries(update)) {
        const parts = attr.split(".");
        let owner = data[index];
        for (const p of parts.slice(0, -1)) owner = owner[p];
        const key = parts.at(-1);
        if (!Array.isArray(owner[key])) throw new Error(`cannot extend missing or non-extendable attribute: ${attr}`);
        owner[key] = owner[key].concat(values[j]).slice(-maxPoints);
      }
    });
  }
}
