# plot.gp - charts of perf/run.sh's medians: gnuplot -e "outdir='perf/out'" perf/plot.gp
# Reads outdir/plot.dat, sweep_tcp.dat, sweep_udp.dat, latency.dat (summarize.py writes
# them; NaN = not measured) and writes:
#   results.png            tcp-bulk and tcp-msgs beside iperf3 (bars)
#   results_sweep_tcp.png  TCP messages/s and Gbit/s vs message size: crust, iperf3, libuv
#   results_sweep_udp.png  datagrams/s vs datagram size: crust udp-pps, GSO/GRO loop, sockperf
#   results_latency.png    round-trip p50/p99/p99.9: crust pingpong, sockperf
if (!exists("outdir")) outdir = "perf/out"
set datafile missing "NaN"

# ---- tcp-bulk / tcp-msgs bars ----
set terminal pngcairo size 1000,500 noenhanced
set output outdir."/results.png"
set title "crust vs iperf3 on loopback (medians; receiver cpu 0, sender cpu 1)"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set yrange [0:*]
set offsets 0, 0, graph 0.08, 0
set grid ytics
set key top right
w = 0.9 / 4
plot outdir."/plot.dat" using 2:xtic(1) title "crust (sealed, AES-256-GCM)", \
     "" using 3 title "crust --tracer (clear records)", \
     "" using 4 title "iperf3 (same message size)", \
     "" using 5 title "iperf3 -l 1M", \
     "" using ($0-1.5*w):2:(sprintf("%.2f", $2)) with labels offset 0,0.7 notitle, \
     "" using ($0-0.5*w):3:(sprintf("%.2f", $3)) with labels offset 0,0.7 notitle, \
     "" using ($0+0.5*w):4:(sprintf("%.2f", $4)) with labels offset 0,0.7 notitle, \
     "" using ($0+1.5*w):5:(sprintf("%.2f", $5)) with labels offset 0,0.7 notitle
unset offsets

# ---- TCP throughput vs message size ----
reset
set datafile missing "NaN"
set terminal pngcairo size 1200,500 noenhanced
set output outdir."/results_sweep_tcp.png"
set multiplot layout 1,2 title "TCP over loopback vs message size (one connection, medians)"
set logscale x 2
set logscale y 10
set grid xtics ytics
set xlabel "message size (bytes)"
set key bottom right font ",9"
set ylabel "million messages/s received"
plot outdir."/sweep_tcp.dat" using 1:2 with linespoints lw 2 title "crust sealed", \
     "" using 1:3 with linespoints lw 2 title "crust tracer", \
     "" using 1:4 with linespoints title "iperf3 -l SIZE", \
     "" using 1:5 with linespoints title "libuv, uv_write per message", \
     "" using 1:6 with linespoints dt 2 title "libuv, app-coalesced writes"
set ylabel "Gbit/s received"
set key top left font ",9"
plot outdir."/sweep_tcp.dat" using 1:7 with linespoints lw 2 title "crust sealed", \
     "" using 1:8 with linespoints lw 2 title "crust tracer", \
     "" using 1:9 with linespoints title "iperf3 -l SIZE", \
     "" using 1:10 with linespoints title "libuv, uv_write per message", \
     "" using 1:11 with linespoints dt 2 title "libuv, app-coalesced writes"
unset multiplot

# ---- UDP datagrams/s vs size ----
reset
set datafile missing "NaN"
set terminal pngcairo size 800,500 noenhanced
set output outdir."/results_sweep_udp.png"
set title "UDP datagrams/s received over loopback vs datagram size (medians)"
set logscale x 2
set grid xtics ytics
set yrange [0:*]
set xlabel "datagram size (bytes)"
set ylabel "million datagrams/s received"
set key top right
plot outdir."/sweep_udp.dat" using 1:2 with linespoints lw 2 title "crust udp-pps (engine, GSO/GRO)", \
     "" using 1:3 with linespoints title "plain UDP GSO/GRO loop (limit)", \
     "" using 1:4 with linespoints title "sockperf throughput"

# ---- latency percentiles ----
reset
set datafile missing "NaN"
set terminal pngcairo size 900,500 noenhanced
set output outdir."/results_latency.png"
set title "Ping-pong round trip, 64 B, one in flight (medians of runs; lower is better)"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set logscale y 10
set grid ytics
set ylabel "microseconds"
set key top left
w = 0.9 / 3
plot outdir."/latency.dat" using 2:xtic(1) title "p50", \
     "" using 3 title "p99", \
     "" using 4 title "p99.9", \
     "" using ($0-w):2:(sprintf("%.0f", $2)) with labels offset 0,0.7 notitle, \
     "" using ($0):3:(sprintf("%.0f", $3)) with labels offset 0,0.7 notitle, \
     "" using ($0+w):4:(sprintf("%.0f", $4)) with labels offset 0,0.7 notitle
