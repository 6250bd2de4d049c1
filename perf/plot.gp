# plot.gp - bar chart of perf/run.sh's medians: gnuplot -e "outdir='perf/out'" perf/plot.gp
# Reads outdir/plot.dat (label, crust sealed, crust tracer, iperf3 same size, iperf3 1 MiB
# writes), writes outdir/results.png.
if (!exists("outdir")) outdir = "perf/out"
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
set datafile missing "NaN"
w = 0.9 / 4
plot outdir."/plot.dat" using 2:xtic(1) title "crust (sealed, AES-256-GCM)", \
     "" using 3 title "crust --tracer (clear records)", \
     "" using 4 title "iperf3 (same message size)", \
     "" using 5 title "iperf3 -l 1M", \
     "" using ($0-1.5*w):2:(sprintf("%.2f", $2)) with labels offset 0,0.7 notitle, \
     "" using ($0-0.5*w):3:(sprintf("%.2f", $3)) with labels offset 0,0.7 notitle, \
     "" using ($0+0.5*w):4:(sprintf("%.2f", $4)) with labels offset 0,0.7 notitle, \
     "" using ($0+1.5*w):5:(sprintf("%.2f", $5)) with labels offset 0,0.7 notitle
