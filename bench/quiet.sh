# Sourced by bench scripts (bash): the quiet gate's measure.
#
# bg_load: prints the CPU use of the whole machine over one second, as a whole percentage
# of all its CPUs (user, nice, system, irq, softirq, steal against idle and iowait, from
# /proc/stat), taken while the script itself runs nothing: what other tenants use. The
# scripts wait, up to QUIET_WAIT seconds, until it is under QUIET_MAX, and print it.
bg_load() {
  local a b
  a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat); sleep 1
  b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN{split(a,x," "); split(b,y," "); bu=y[1]-x[1]; id=y[2]-x[2];
    printf "%.0f\n", (bu+id) ? 100*bu/(bu+id) : 0}'
}
