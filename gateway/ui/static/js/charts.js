// Live time-series charts (uPlot, vendored: the global `uPlot` of vendor/uplot).

const COLORS = ["#2f6fde", "#c8392b", "#1f8a4c", "#b7791f"];

// A chart of several series over time; .update(xs, [ys...]) redraws it in place.
export function timeChart(el, title, names, unit) {
  const width = () => {
    const style = getComputedStyle(el);
    return Math.max(300, el.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight));
  };
  const plot = new uPlot(
    {
      title,
      width: width(),
      height: 220,
      series: [
        {},
        ...names.map((name, i) => ({
          label: name,
          stroke: COLORS[i % COLORS.length],
          width: 2,
          spanGaps: false,
          value: (_, v) => (v === null || v === undefined ? "–" : `${v.toFixed(2)} ${unit}`),
        })),
      ],
      axes: [{}, { label: unit, size: 60 }],
      scales: { x: { time: true } },
    },
    [[], ...names.map(() => [])],
    el,
  );
  const resize = () => plot.setSize({ width: width(), height: 220 });
  window.addEventListener("resize", resize);
  return {
    update(xs, series) {
      plot.setData([xs, ...series]);
    },
    destroy() {
      window.removeEventListener("resize", resize);
      plot.destroy();
    },
  };
}
