# The clickstream dashboard in R Shiny: KPIs against the previous period, the funnel, products and categories,
# a product's daily trend, events and sessions over time and the weekly heatmap. It reads the warehouse as
# dashboard_reader ($CLICKSTREAM_DASHBOARD_DSN) through the same SQL files as the Python app
# (sql/analytics/dashboard, or $CLICKSTREAM_SQL_DIR). Helpers: R/dashboard.R (sourced by Shiny first).
#   clickstream dashboard --r      or      Rscript -e 'shiny::runApp("shiny/app.R", port = 3301)'

library(shiny)
library(ggplot2)

SQL_DIR <- dashboard_sql_dir()
RETRY_MS <- 2000
POLL_MS <- 5000  # how often the page checks the warehouse (its range of data) for data or a lost connection
DEFAULT_RANGE <- Sys.Date() - c(6, 0)  # until the warehouse's own last 7 days are known
TIME_ZONES <- c("UTC", "Europe/London", "Europe/Paris", "America/New_York", "America/Los_Angeles",
                "Asia/Ho_Chi_Minh", "Asia/Tokyo", "Australia/Sydney", "Asia/Kolkata")
FUNNEL_STEPS <- c("product_view", "add_to_cart", "begin_checkout", "purchase")
DAY_NAMES <- c("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
PALETTE <- c("#2563eb", "#f97316", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04")
NO_DATA <- "No events match these filters in this range."
# Debian's shiny serves an older bootstrap-datepicker whose page-load hook calls $.fn.datepicker, which shiny has
# just renamed bsDatepicker: give the hook the plugin back under its old name (a script after shiny's).
DEBIAN_DATEPICKER_FIX <- "if (!$.fn.datepicker && $.fn.bsDatepicker) $.fn.datepicker = $.fn.bsDatepicker;"
# A click on a row of the products table chooses its product (the first column, product_id).
CHOOSE_PRODUCT_ON_CLICK <- "function(table) {
  $(table.table().body()).on('click', 'tr', function() {
    var row = table.row(this).data();
    if (row) Shiny.setInputValue('product_row', row[0], {priority: 'event'});
  });
}"

kpi_card <- function(id, label) div(class = "kpi", div(class = "kpi-label", label), uiOutput(id))

panel <- function(title, ...) div(class = "panel", h3(title), ...)

ui <- fluidPage(
  title = "Clickstream dashboard (R)",
  tags$head(tags$link(rel = "icon", href = "data:,"), tags$style(HTML("
    body { background: #f8fafc; }
    .panel, .kpi { background: #fff; border: 1px solid #e2e8f0; border-radius: 8px; padding: 12px 16px;
                   margin-bottom: 16px; }
    .panel h3 { font-size: 17px; margin-top: 4px; }
    .kpis { display: flex; gap: 12px; flex-wrap: wrap; }
    .kpi { flex: 1 1 160px; }
    .kpi-label { color: #64748b; font-size: 13px; }
    .kpi-value { display: block; font-size: 22px; font-weight: 600; }
    .kpi-change { display: block; color: #64748b; font-size: 13px; }
    .notice { border-left: 4px solid #f59e0b; background: #fffbeb; padding: 12px 16px; margin-bottom: 16px; }
  "))),
  titlePanel("Clickstream dashboard"),
  sidebarLayout(
    sidebarPanel(
      width = 3,
      dateRangeInput("date_range", "Dates", start = DEFAULT_RANGE[1], end = DEFAULT_RANGE[2]),
      selectInput("tz", "Business time zone", TIME_ZONES, selectize = FALSE),
      selectInput("login_state", "Login state",
                  c("All shoppers" = "all", "Signed in" = "signed_in", "Anonymous" = "anonymous"), selectize = FALSE),
      selectInput("device", "Device",
                  c("All devices" = "all", "Desktop" = "desktop", "Mobile" = "mobile", "Tablet" = "tablet"),
                  selectize = FALSE),
      checkboxInput("include_bots", "Include bots", FALSE),
      checkboxInput("compare", "Compare with the previous period", TRUE)
    ),
    mainPanel(
      width = 9,
      uiOutput("warehouse_status"),
      div(class = "kpis",
          kpi_card("kpi_events", "Events"), kpi_card("kpi_sessions", "Sessions"),
          kpi_card("kpi_visitors", "Visitors"), kpi_card("kpi_conversion", "Conversion (view to purchase)"),
          kpi_card("kpi_revenue", "Revenue")),
      panel("Funnel",
            radioButtons("funnel_breakdown", "Breakdown",
                         c("None" = "none", "Device" = "device", "Login state" = "login_state",
                           "Traffic source (UTM)" = "traffic_source"), inline = TRUE),
            plotOutput("funnel_plot", height = "300px"), tableOutput("funnel_table")),
      panel("Products", dataTableOutput("products_table")),
      panel("Categories", tableOutput("categories_table")),
      panel("Product trend", selectInput("product", "Product", NULL, selectize = FALSE),
            plotOutput("product_trend_plot", height = "340px")),
      panel("Trends",
            radioButtons("trend_grain", "Grain", c("Per day" = "day", "Per hour" = "hour"), inline = TRUE),
            plotOutput("trend_plot", height = "280px")),
      panel("Activity by hour and weekday", plotOutput("heatmap_plot", height = "300px"))
    )
  ),
  tags$script(HTML(DEBIAN_DATEPICKER_FIX))
)

chart_theme <- theme_minimal(base_size = 13) +
  theme(panel.grid.minor = element_blank(), legend.position = "top", plot.title.position = "plot",
        plot.subtitle = element_text(size = 10, colour = "#64748b"))

# Axis breaks on whole numbers, for counts.
whole_breaks <- function(limits) unique(round(pretty(limits)))

as_percent <- function(x) ifelse(is.na(x), "", sprintf("%.2f%%", 100 * as.numeric(x)))

server <- function(input, output, session) {
  dsn <- Sys.getenv("CLICKSTREAM_DASHBOARD_DSN")
  db <- if (nzchar(dsn)) warehouse_reader(dsn, SQL_DIR) else NULL
  session$onSessionEnded(function() if (!is.null(db)) db$close())
  problem <- reactiveVal(NULL)

  # Rows of question `name`, or NULL after a failure (shown once in the notice; every panel retries).
  ask <- function(name, params) {
    if (is.null(db)) {
      problem("CLICKSTREAM_DASHBOARD_DSN is not set: start the app with `clickstream dashboard --r`.")
      return(NULL)
    }
    tryCatch({
      rows <- db$query(name, params)
      problem(NULL)
      rows
    }, error = function(e) {
      problem(paste("The warehouse cannot be read right now; retrying every", RETRY_MS / 1000, "s.",
                    conditionMessage(e)))
      invalidateLater(RETRY_MS)
      NULL
    })
  }

  filters <- reactive({
    req(input$date_range, input$tz)
    dates <- as.Date(input$date_range)
    req(!anyNA(dates), dates[1] <= dates[2])
    bounds <- period_bounds(dates[1], dates[2], input$tz)
    list(bounds = bounds,
         params = list(start = bounds$current[["start"]], end = bounds$current[["end"]], tz = input$tz,
                       login_state = input$login_state, device = input$device,
                       include_bots = if (isTRUE(input$include_bots)) "true" else "false"))
  })
  with_filters <- function(...) utils::modifyList(filters()$params, list(...))

  data_range <- reactive({
    rows <- ask("data_range", list(tz = input$tz))
    invalidateLater(POLL_MS)
    list(rows = rows, empty = !is.null(rows) && (nrow(rows) == 0 || is.na(rows[[2]][1])))  # first_date, last_date
  })

  # The warehouse's last 7 days with data, once known, unless the user has chosen dates already.
  observeEvent(data_range(), {
    rows <- data_range()$rows
    chosen <- isolate(input$date_range)
    untouched <- is.null(chosen) || identical(as.Date(chosen), DEFAULT_RANGE)
    if (!untouched || is.null(rows) || data_range()$empty) return()
    last <- as.Date(rows[[2]][1])
    updateDateRangeInput(session, "date_range", start = max(as.Date(rows[[1]][1]), last - 6), end = last)
  })

  kpis <- reactive({
    current <- ask("kpis", with_filters())
    if (is.null(current) || !isTRUE(input$compare)) return(list(current = current, previous = NULL))
    previous <- filters()$bounds$previous
    list(current = current, previous = ask("kpis", with_filters(start = previous[["start"]], end = previous[["end"]])))
  })
  funnel <- reactive(ask("funnel", with_filters(breakdown = input$funnel_breakdown)))
  products <- reactive(ask("products", with_filters()))
  categories <- reactive(ask("categories", with_filters()))
  product_trend <- reactive({
    req(input$product)
    ask("product_trend", with_filters(product_id = input$product))
  })
  trend <- reactive(ask("trend", with_filters(grain = input$trend_grain)))
  heatmap <- reactive(ask("heatmap", with_filters()))

  output$warehouse_status <- renderUI({
    if (!is.null(problem())) {
      return(div(class = "notice", id = "connection_notice", strong("No connection. "), problem()))
    }
    if (isTRUE(data_range()$empty)) {
      return(div(class = "notice", id = "empty_state", strong("The warehouse has no events yet."),
                 p("Load some: `clickstream demo` simulates a week of shopping and loads it, or send traffic with",
                   "`clickstream simulate` and load it with `clickstream etl`. This page checks again every",
                   POLL_MS / 1000, "seconds.")))
    }
    NULL
  })

  # The rows, or a message in place of the output: while the warehouse cannot answer, or without data (no rows,
  # or only zeros in column `counted`).
  need_rows <- function(rows, counted = NULL) {
    validate(need(!is.null(rows), "Waiting for the warehouse."))
    validate(need(nrow(rows) > 0 && (is.null(counted) || sum(as.numeric(rows[[counted]])) > 0), NO_DATA))
    rows
  }

  kpi_text <- function(key) {
    force(key)
    renderUI({
      answer <- kpis()
      rows <- need_rows(answer$current)
      previous <- if (!is.null(answer$previous) && nrow(answer$previous) > 0) kpi_values(answer$previous)
      text <- kpi_texts(kpi_values(rows), previous, filters()$bounds$days)[[key]]
      tagList(span(class = "kpi-value", text[1]), if (length(text) > 1) span(class = "kpi-change", text[2]))
    })
  }
  for (key in c("events", "sessions", "visitors", "conversion", "revenue")) {
    output[[paste0("kpi_", key)]] <- kpi_text(key)
  }

  output$funnel_plot <- renderPlot({
    rows <- need_rows(funnel(), "sessions")
    rows$step <- factor(rows$step, levels = FUNNEL_STEPS)
    rows$label <- ifelse(is.na(rows$conversion), "", sprintf("%.1f%%", 100 * rows$conversion))
    ggplot(rows, aes(step, sessions, fill = segment)) +
      geom_col(position = position_dodge2(preserve = "single"), width = 0.8) +
      geom_text(aes(label = label), position = position_dodge2(width = 0.8, preserve = "single"),
                vjust = -0.4, size = 3.5) +
      scale_fill_manual(values = rep(PALETTE, length.out = length(unique(rows$segment))), name = NULL) +
      scale_y_continuous(labels = scales::label_comma(), expand = expansion(mult = c(0, 0.12))) +
      labs(x = NULL, y = "sessions", subtitle = "labels: conversion from the previous step") + chart_theme
  }, res = 96)
  output$funnel_table <- renderTable({
    rows <- need_rows(funnel())
    data.frame(segment = rows$segment, step = rows$step, sessions = format_count(rows$sessions),
               conversion = as_percent(rows$conversion),
               drop_off = ifelse(is.na(rows$drop_off), "", format_count(rows$drop_off)))
  }, striped = TRUE)

  output$products_table <- renderDataTable({
    rows <- need_rows(products())
    data.frame(product_id = rows$product_id, product = rows$product_name, category = rows$category,
               views = rows$views, add_to_cart = rows$add_to_cart, purchases = rows$purchases,
               conversion = round(100 * as.numeric(rows$conversion), 2), revenue = round(as.numeric(rows$revenue), 2))
  }, options = list(pageLength = 10, order = list(list(7, "desc"))), callback = CHOOSE_PRODUCT_ON_CLICK)
  output$categories_table <- renderTable({
    rows <- need_rows(categories())
    data.frame(category = rows$category, views = format_count(rows$views), add_to_cart = format_count(rows$add_to_cart),
               purchases = format_count(rows$purchases), conversion = as_percent(rows$conversion),
               revenue = format_amount(rows$revenue))
  }, striped = TRUE)

  observeEvent(input$product_row, updateSelectInput(session, "product", selected = input$product_row))
  observeEvent(products(), {
    rows <- products()
    if (is.null(rows) || nrow(rows) == 0) return()
    choices <- stats::setNames(rows$product_id, paste0(rows$product_name, " (", rows$product_id, ")"))
    keep <- if (isTRUE(input$product %in% rows$product_id)) input$product else rows$product_id[1]
    updateSelectInput(session, "product", choices = choices, selected = keep)
  })
  output$product_trend_plot <- renderPlot({
    rows <- need_rows(product_trend())
    long <- do.call(rbind, lapply(c("views", "add_to_cart", "purchases", "revenue"), function(measure) {
      data.frame(day = as.Date(rows$day), measure = measure, value = as.numeric(rows[[measure]]))
    }))
    long$measure <- factor(long$measure, levels = c("views", "add_to_cart", "purchases", "revenue"))
    ggplot(long, aes(day, value, colour = measure)) + geom_line(linewidth = 1) + geom_point(size = 1.8) +
      facet_wrap(~measure, nrow = 2, scales = "free_y") + scale_colour_manual(values = PALETTE, guide = "none") +
      scale_y_continuous(breaks = whole_breaks, labels = scales::label_comma()) + expand_limits(y = 0) +
      labs(x = NULL, y = NULL) + chart_theme
  }, res = 96)

  output$trend_plot <- renderPlot({
    rows <- need_rows(trend(), "events")
    bucket <- if (inherits(rows$bucket, "POSIXt")) rows$bucket else as.POSIXct(rows$bucket, tz = "UTC")
    long <- rbind(data.frame(bucket = bucket, measure = "events", value = as.numeric(rows$events)),
                  data.frame(bucket = bucket, measure = "sessions", value = as.numeric(rows$sessions)))
    ggplot(long, aes(bucket, value, colour = measure)) + geom_line(linewidth = 1) +
      scale_colour_manual(values = PALETTE, name = NULL) + scale_y_continuous(labels = scales::label_comma()) +
      expand_limits(y = 0) +
      labs(x = paste("per", input$trend_grain, "in", input$tz), y = NULL) + chart_theme
  }, res = 96)

  output$heatmap_plot <- renderPlot({
    rows <- need_rows(heatmap(), "events")
    cells <- expand.grid(dow = 0:6, hour = 0:23)
    cells$events <- 0
    found <- match(paste(cells$dow, cells$hour), paste(rows$dow, rows$hour))
    cells$events[!is.na(found)] <- as.numeric(rows$events[found[!is.na(found)]])
    cells$day <- factor(DAY_NAMES[cells$dow + 1], levels = rev(DAY_NAMES))
    ggplot(cells, aes(hour, day, fill = events)) + geom_tile(colour = "white", linewidth = 0.4) +
      scale_fill_gradient(low = "#eff6ff", high = "#1e3a8a", labels = scales::label_comma()) +
      scale_x_continuous(breaks = seq(0, 23, 3), expand = c(0, 0)) +
      labs(x = paste("hour of day in", input$tz), y = NULL) + chart_theme + theme(legend.position = "right")
  }, res = 96)
}

shinyApp(ui, server)
