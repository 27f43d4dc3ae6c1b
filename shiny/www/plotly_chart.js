// Shiny output binding of shiny/app.py's charts: each value is a plotly.js figure spec {data, layout}, drawn
// (and redrawn in place on the next value) with Plotly.react. plotly.js (www/plotly-cartesian.min.js) loads async:
// Shiny connects and the server answers while it runs, and the charts are drawn once it has run.
(() => {
  const plotly = new Promise((resolve) => {
    const ready = () => window.Plotly && resolve(window.Plotly);
    if (!ready()) document.querySelector('script[src$="/plotly-cartesian.min.js"]').addEventListener("load", ready);
  });

  class PlotlyChart extends Shiny.OutputBinding {
    find(scope) {
      return $(scope).find(".plotly-chart-output");
    }

    renderValue(el, spec) {
      plotly.then((Plotly) => spec
        ? Plotly.react(el, spec.data, spec.layout, {displayModeBar: false, responsive: true})
        : Plotly.purge(el));
    }

    renderError(el, err) {
      // Shiny empties the element: plotly.js starts afresh on the next value
      plotly.then((Plotly) => { Plotly.purge(el); super.renderError(el, err); });
    }
  }
  Shiny.outputBindings.register(new PlotlyChart(), "clickstream.plotlyChart");
})();
