# SPDX-License-Identifier: MIT
# Echo round trips per second against connection count (bench_echo's data).
#   gnuplot -e "datafile='echo.dat'; outfile='echo.png'" plot_echo.gp
if (!exists("datafile")) datafile = 'echo.dat'
if (!exists("outfile")) outfile = 'echo.png'
set terminal png size 800,500
set output outfile
set title "Echo, 64-byte messages: round trips per second"
set xlabel "connections"
set ylabel "round trips / s"
set logscale x
set key right bottom
set grid
set yrange [0:*]
plot datafile using 1:2 with linespoints title "libev callbacks (echo\\_libev)", \
     datafile using 1:3 with linespoints title "libbluelet green threads (echo\\_simple)"
