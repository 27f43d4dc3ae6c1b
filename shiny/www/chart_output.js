// Shiny output binding of shiny/app.py's charts: each value is a Chart.js config {type, data, options} of JSON values
// (clickstream.analytics.dashboard_charts), drawn on a canvas and redrawn in place on the next value. After each
// drawing the output's data-drawn attribute counts it.
(() => {
  Object.assign(Chart.defaults, {animation: false, maintainAspectRatio: false, color: "#374151", borderColor: "#e5e7eb"});
  Chart.defaults.font.family = "system-ui, sans-serif";

  // options.plugins.barLabels.labels: the first dataset's bars' labels, written above them
  Chart.register({
    id: "barLabels",
    afterDatasetsDraw(chart, _args, options) {
      if (!options.labels) return;
      const {ctx} = chart;
      ctx.save();
      Object.assign(ctx, {textAlign: "center", textBaseline: "bottom", fillStyle: Chart.defaults.color,
                          font: `12px ${Chart.defaults.font.family}`});
      chart.getDatasetMeta(0).data.forEach((bar, n) => ctx.fillText(options.labels[n] ?? "", bar.x, bar.y - 3));
      ctx.restore();
    },
  });

  // A matrix chart's cells fill its category grid; each cell's tooltip is its own `label`.
  const cells = (config) => {
    const size = (axis) => ({chart}) => {
      const area = chart.chartArea;
      return area ? (axis === "x" ? area.width : area.height) / chart.scales[axis].getLabels().length - 1 : 0;
    };
    config.data.datasets.forEach((dataset) => Object.assign(dataset, {width: size("x"), height: size("y")}));
    config.options.plugins = {...config.options.plugins,
      tooltip: {callbacks: {title: () => "", label: (item) => item.raw.label}}};
  };

  class ChartOutput extends Shiny.OutputBinding {
    find(scope) {
      return $(scope).find(".chart-output");
    }

    renderValue(el, config) {
      const canvas = el.querySelector("canvas");
      let chart = canvas && Chart.getChart(canvas);
      if (!config) {
        chart?.destroy();
        el.replaceChildren();
        return;
      }
      if (config.type === "matrix") cells(config);
      if (chart && chart.config.type === config.type) {
        chart.data = config.data;
        chart.options = config.options;
        chart.update();
      } else {
        chart?.destroy();
        const drawn = document.createElement("canvas");
        el.replaceChildren(drawn);
        chart = new Chart(drawn, config);
      }
      el.dataset.drawn = String(Number(el.dataset.drawn || 0) + 1);
    }

    renderError(el, err) {
      // Shiny empties the element: the next value starts a new chart
      const canvas = el.querySelector("canvas");
      if (canvas) Chart.getChart(canvas)?.destroy();
      super.renderError(el, err);
    }
  }
  Shiny.outputBindings.register(new ChartOutput(), "clickstream.chartOutput");

  // Chart.js's first chart costs some 30 ms more than the next ones: pay it on a chart nobody sees while the server
  // answers the page's first round, not when its charts arrive.
  $(document).one("shiny:connected", () => {
    const warmUp = new Chart(document.createElement("canvas"), {type: "bar", data: {labels: ["-"], datasets: [{data: [1]}]},
                                                               options: {responsive: false}});
    warmUp.destroy();
  });
})();
