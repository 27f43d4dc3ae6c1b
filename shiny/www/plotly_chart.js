// Shiny output binding of shiny/app.py's charts: each value is a plotly.js figure spec {data, layout}, drawn
// (and redrawn in place on the next value) with Plotly.react.
(() => {
  class PlotlyChart extends Shiny.OutputBinding {
    find(scope) {
      return $(scope).find(".plotly-chart-output");
    }

    renderValue(el, spec) {
      if (!spec) {
        Plotly.purge(el);
        return;
      }
      Plotly.react(el, spec.data, spec.layout, {displayModeBar: false, responsive: true});
    }

    renderError(el, err) {
      Plotly.purge(el);  // Shiny empties the element: plotly.js starts afresh on the next value
      super.renderError(el, err);
    }
  }
  Shiny.outputBindings.register(new PlotlyChart(), "clickstream.plotlyChart");
})();
