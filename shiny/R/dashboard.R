# Helpers of the R dashboard (shiny/app.R): its connection string, the shared SQL files and how values read.
# Shiny sources this folder before app.R; tests source it alone.

#' The connection parts (user, password, host, port, dbname) of a libpq connection string: a URI
#' postgresql://user:password@host:port/dbname (percent-decoded) or key=value pairs (values may be 'quoted').
parse_dsn <- function(dsn) {
  uri <- "^postgres(ql)?://(([^:@/]*)(:([^@/]*))?@)?([^:/?]*)(:([0-9]+))?/([^?]*)(\\?.*)?$"
  if (grepl(uri, dsn, perl = TRUE)) {
    part <- function(group) utils::URLdecode(sub(uri, group, dsn, perl = TRUE))
    found <- list(user = part("\\3"), password = part("\\5"), host = part("\\6"), port = part("\\8"),
                  dbname = part("\\9"))
  } else {
    pairs <- regmatches(dsn, gregexpr("[A-Za-z_]+\\s*=\\s*('([^'\\\\]|\\\\.)*'|\\S*)", dsn, perl = TRUE))[[1]]
    if (!length(pairs)) {
      stop("not a libpq connection string (postgresql://user:password@host:port/dbname)", call. = FALSE)
    }
    keys <- sub("\\s*=.*$", "", pairs, perl = TRUE)
    values <- sub("^[A-Za-z_]+\\s*=\\s*", "", pairs, perl = TRUE)
    quoted <- grepl("^'.*'$", values)
    values[quoted] <- gsub("\\\\(.)", "\\1", substr(values[quoted], 2, nchar(values[quoted]) - 1), perl = TRUE)
    found <- as.list(stats::setNames(values, keys))
  }
  text <- function(key) if (is.null(found[[key]])) "" else found[[key]]
  list(user = text("user"), password = text("password"), host = text("host"),
       port = if (nzchar(text("port"))) as.integer(text("port")) else 5432L, dbname = text("dbname"))
}

#' The folder of the dashboard's SQL: $CLICKSTREAM_SQL_DIR, else sql/analytics/dashboard beside the app's folder.
dashboard_sql_dir <- function(app_dir = getwd()) {
  from_env <- Sys.getenv("CLICKSTREAM_SQL_DIR")
  if (nzchar(from_env)) from_env else file.path(dirname(normalizePath(app_dir)), "sql", "analytics", "dashboard")
}

#' psycopg's placeholders %(name)s as DBI's ?name, and its %% as %.
dbi_placeholders <- function(sql) {
  found <- gregexpr("%%|%\\([A-Za-z_][A-Za-z0-9_]*\\)s", sql, perl = TRUE)
  regmatches(sql, found) <- lapply(regmatches(sql, found), function(tokens) {
    ifelse(tokens == "%%", "%", paste0("?", substr(tokens, 3, nchar(tokens) - 2)))
  })
  sql
}

#' The query of file `name`.sql with `params` quoted in by DBI::sqlInterpolate (each a string, the SQL casts it).
interpolate_query <- function(conn, sql_dir, name, params) {
  text <- dbi_placeholders(paste(readLines(file.path(sql_dir, paste0(name, ".sql")), warn = FALSE), collapse = "\n"))
  found <- DBI::sqlParseVariables(conn, text)
  used <- unique(substring(text, found$start + 1, found$end))
  missing <- setdiff(used, names(params))
  if (length(missing)) stop(name, ".sql needs ", paste(missing, collapse = ", "), call. = FALSE)
  DBI::sqlInterpolate(conn, text, .dots = lapply(params[used], as.character))
}

#' [start 00:00, end + 1 day 00:00) in time zone `tz` as UTC timestamps, and the period of the same length
#' just before it.
period_bounds <- function(start, end, tz) {
  at_midnight <- function(day) {
    format(as.POSIXct(format(day), tz = tz), "%Y-%m-%d %H:%M:%S+00", tz = "UTC")
  }
  days <- as.integer(end - start) + 1L
  list(current = c(start = at_midnight(start), end = at_midnight(end + 1)),
       previous = c(start = at_midnight(start - days), end = at_midnight(start)),
       days = days)
}

#' A whole number with thousands separators, never abbreviated.
format_count <- function(x) formatC(round(as.numeric(x)), format = "f", digits = 0, big.mark = ",")

#' An amount with thousands separators and cents.
format_amount <- function(x) formatC(as.numeric(x), format = "f", digits = 2, big.mark = ",")

#' A ratio as a percentage with two decimals ("n/a" without one).
format_percent <- function(x) if (is.na(x)) "n/a" else paste0(formatC(100 * x, format = "f", digits = 2), "%")

#' The change from `before` to `now`: relative for counts, in percentage points for rates.
format_change <- function(now, before, rate = FALSE) {
  if (is.na(now) || is.na(before)) return("n/a")
  if (rate) return(sprintf("%+.2f pp", 100 * (now - before)))
  if (before == 0) return(if (now == 0) "no change" else "new")
  sprintf("%+.1f%%", 100 * (now - before) / before)
}

#' The KPI values of one kpis.sql row: events, sessions, visitors, conversion, revenue.
kpi_values <- function(row) {
  views <- as.numeric(row$product_view_sessions)
  list(events = as.numeric(row$events), sessions = as.numeric(row$sessions), visitors = as.numeric(row$visitors),
       conversion = if (is.na(views) || views == 0) NA_real_ else as.numeric(row$purchase_sessions) / views,
       revenue = as.numeric(row$revenue))
}

#' Each KPI's text: its exact value, then (with a previous period of `days` days) the change against it.
kpi_texts <- function(current, previous = NULL, days = NA) {
  shown <- list(events = format_count, sessions = format_count, visitors = format_count,
                conversion = format_percent, revenue = format_amount)
  stats::setNames(lapply(names(shown), function(key) {
    value <- shown[[key]](current[[key]])
    if (is.null(previous)) return(value)
    c(value, paste(format_change(current[[key]], previous[[key]], rate = key == "conversion"), "vs the previous",
                   if (days == 1) "day" else paste(days, "days")))
  }), names(shown))
}

#' A lazy connection to the warehouse as the DSN's role: query(name, params) runs file `name`.sql read-only,
#' reconnecting when the last connection failed; close() ends it.
warehouse_reader <- function(dsn, sql_dir) {
  conn <- NULL
  close <- function() {
    if (!is.null(conn)) try(DBI::dbDisconnect(conn), silent = TRUE)
    conn <<- NULL
  }
  open <- function() {
    if (!is.null(conn) && isTRUE(tryCatch(DBI::dbIsValid(conn), error = function(e) TRUE))) return(conn)
    close()
    parts <- parse_dsn(dsn)
    conn <<- DBI::dbConnect(RPostgreSQL::PostgreSQL(), host = parts$host, port = parts$port, user = parts$user,
                            password = parts$password, dbname = parts$dbname)
    DBI::dbExecute(conn, "SET default_transaction_read_only = on")
    DBI::dbExecute(conn, "SET statement_timeout = '30s'")  # a stuck query ends as a failure the page shows
    DBI::dbExecute(conn, "SET application_name = 'clickstream-dashboard-r'")
    conn
  }
  query <- function(name, params) {
    tryCatch({
      current <- open()
      rows <- DBI::dbGetQuery(current, interpolate_query(current, sql_dir, name, params))
      if (!is.data.frame(rows)) stop("the warehouse gave no answer to ", name, ".sql", call. = FALSE)
      rows
    }, error = function(e) {
      close()
      stop(e)
    })
  }
  list(query = query, close = close)
}
