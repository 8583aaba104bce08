#!/bin/sh
# Decode speed of --sparse-head vs dense, alternating in one run (same GGUF, same threads):
#   flock /work/heavy.lock scripts/bench-sparse-head.sh MODEL [ROUNDS] [THREADS]
# Prints one JSON line per bench run, then the ratio of the mean tg tok/s.
set -e
model=${1:?model}; rounds=${2:-3}; threads=${3:-2}
cd "$(dirname "$0")/.."
out=$(mktemp)
i=0
while [ $i -lt "$rounds" ]; do
  for mode in dense sparse; do
    flag=; [ $mode = sparse ] && flag=--sparse-head
    node bin/ctxsparse.js bench -m "$model" -p 0 -n 128 -r 3 --threads "$threads" $flag --json \
      | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);const t=j.results.find(r=>r.test.startsWith("tg"));
        console.log(JSON.stringify({mode:process.argv[1],tg:+t.tokens_per_second.mean.toFixed(2),samples:t.tokens_per_second.samples.map(x=>+x.toFixed(2)),load_s:j.loads[0].load_seconds,peak_rss_mb:Math.round(j.peak_rss_bytes/1e6),...(j.sparse_head&&{rescored:j.sparse_head.rescored,screen_mb:+(j.sparse_head.screen_bytes/1e6).toFixed(1),head_mb:+(j.sparse_head.head_bytes/1e6).toFixed(1)})}))})' $mode \
      | tee -a "$out"
  done
  i=$((i + 1))
done
node -e 'const ls=require("fs").readFileSync(process.argv[1],"utf8").trim().split("\n").map(JSON.parse);
  const m=k=>{const a=ls.filter(l=>l.mode===k).flatMap(l=>l.samples);return a.reduce((x,y)=>x+y,0)/a.length};
  const ld=k=>{const a=ls.filter(l=>l.mode===k).map(l=>l.load_s);return a.reduce((x,y)=>x+y,0)/a.length};
  console.log(JSON.stringify({dense_tg:+m("dense").toFixed(2),sparse_tg:+m("sparse").toFixed(2),speedup:+(m("sparse")/m("dense")).toFixed(3),load_dense_s:+ld("dense").toFixed(3),load_sparse_s:+ld("sparse").toFixed(3)}))' "$out"
rm -f "$out"
