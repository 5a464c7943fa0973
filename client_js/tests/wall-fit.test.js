// Auto-fit (wall-fit.js): the grid a wall picks from its screen and tile count.

import assert from "node:assert/strict";
import { test } from "node:test";
import { fitGrid } from "../wall-fit.js";

const EXPECTED = {
  1: "1x1",
  2: "1x2", // two wide charts stacked, not two portrait ones side by side
  4: "2x2",
  6: "2x3",
  9: "3x3",
  12: "4x3",
};

for (const [width, height] of [
  [1920, 1080],
  [3840, 2160],
]) {
  test(`auto-fit at ${width}×${height}: 1, 2, 4, 6, 9, 12 tiles`, () => {
    for (const [count, grid] of Object.entries(EXPECTED)) {
      const { cols, rows } = fitGrid(Number(count), width, height);
      assert.equal(`${cols}x${rows}`, grid, `${count} tiles`);
      // Every tile is landscape, and no whole row or column is left empty.
      assert.ok(width / cols >= height / rows, `${count} tiles: landscape tiles`);
      assert.ok(cols * rows - Number(count) < Math.min(cols, rows), `${count} tiles: no empty row or column`);
    }
  });
}

test("auto-fit: a portrait screen stacks tiles; cols= wins; degenerate inputs", () => {
  assert.deepEqual(fitGrid(4, 1080, 1920), { cols: 1, rows: 4 });
  assert.deepEqual(fitGrid(12, 1080, 1920), { cols: 2, rows: 6 });
  assert.deepEqual(fitGrid(6, 1920, 1080, { forcedCols: 3 }), { cols: 3, rows: 2 });
  assert.deepEqual(fitGrid(2, 1920, 1080, { forcedCols: 5 }), { cols: 2, rows: 1 });
  assert.deepEqual(fitGrid(0, 1920, 1080), { cols: 1, rows: 1 });
  assert.deepEqual(fitGrid(4, 0, 0), { cols: 2, rows: 2 }, "no size yet: a 1080p screen");
  assert.deepEqual(fitGrid(4, 1920, 1080, { timeSeries: false }), { cols: 2, rows: 2 });
});
