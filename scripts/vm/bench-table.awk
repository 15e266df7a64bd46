# The Markdown table of the guest blk benchmarks (bench-guest.sh, bench-vfio-guest.sh): medians per
# (rw, depth, driver) of tab-separated samples `rw depth rep driver iops busy%` (one header line), the
# node/kernel ratio of the medians, and the median of the per-repetition ratios. Samples of the driver
# `polled` (node with BlkOptions.pollMicros), when there are any, add a column and its ratio to kernel.
#   awk -F'\t' -v node_col='node IOPS (VFIO)' -v kernel_col='kernel IOPS (virtio_blk + fio)' [-v polled_col=...] -f bench-table.awk SAMPLES
function med(key,   n, i, j, t, a) {
  n = split(vals[key], a, " ")
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
  if (n == 0) return "nan"
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
NR > 1 {
  k = $1 SUBSEP $2 SUBSEP $4
  if ($5 != "NaN") vals[k] = vals[k] " " $5
  v[$1 SUBSEP $2 SUBSEP $3 SUBSEP $4] = $5
  if ($4 == "kernel" && $5 != "NaN" && $5 > 0 && v[$1 SUBSEP $2 SUBSEP $3 SUBSEP "node"] != "NaN")
    vals[$1 SUBSEP $2 SUBSEP "pair"] = vals[$1 SUBSEP $2 SUBSEP "pair"] " " v[$1 SUBSEP $2 SUBSEP $3 SUBSEP "node"] / $5
  busy[k] = busy[k] " " $6
  if ($4 == "polled") polled = 1
  if (!(($1 SUBSEP $2) in seen)) { seen[$1 SUBSEP $2] = 1; order[++n] = $1 SUBSEP $2 }
}
END {
  extra = polled ? " " polled_col " | polled / kernel |" : ""
  print "| rw | depth | " node_col " | " kernel_col " | node / kernel | median of paired ratios |" extra " guest CPU busy % node / kernel |"
  print "|---|---:|---:|---:|---:|---:|" (polled ? "---:|---:|" : "") "---:|"
  for (i = 1; i <= n; i++) {
    split(order[i], p, SUBSEP)
    a = med(order[i] SUBSEP "node"); b = med(order[i] SUBSEP "kernel")
    vals["_bn"] = busy[order[i] SUBSEP "node"]; vals["_bk"] = busy[order[i] SUBSEP "kernel"]
    r = (a != "nan" && b != "nan" && b > 0) ? sprintf("%.2fx", a / b) : "-"
    pr = med(order[i] SUBSEP "pair"); pr = pr == "nan" ? "-" : sprintf("%.2fx", pr)
    cells = ""
    if (polled) {
      c = med(order[i] SUBSEP "polled")
      cells = sprintf(" %s | %s |", (c == "nan" ? "-" : sprintf("%.0f", c)),
        (c != "nan" && b != "nan" && b > 0) ? sprintf("%.2fx", c / b) : "-")
    }
    printf "| %s | %s | %s | %s | %s | %s |%s %s / %s |\n", p[1], p[2], (a == "nan" ? "-" : sprintf("%.0f", a)),
      (b == "nan" ? "-" : sprintf("%.0f", b)), r, pr, cells, med("_bn"), med("_bk")
  }
}
