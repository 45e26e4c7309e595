// The reference workloads of WORKLOADS.md (beside the repository) as Apache Flink 2.3 DataStream
// jobs, so that Flink can be measured on the same machine in the same hour as weir (see
// scripts/flink-bench.sh, which builds and runs this file against Flink's own jars).
//
//   java -cp <flink jars>:. Reference stateless|stateless-unchained|wordcount|window N
//   java -cp <flink jars>:. Reference expect JOB N
//
// Each job runs in a local MiniCluster at parallelism 2 and prints one line per sink subtask:
// "count,sum". Records are generated from their index exactly as weir's `gen` source does (the
// index range is split into ranges rather than strides; the records are the same). `expect`
// computes the job's result with a plain loop, without Flink, in a run that is not timed.

import java.time.Duration;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.functions.FlatMapFunction;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.api.java.tuple.Tuple3;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;

public class Reference {
    static final long GAMMA = 0x9E3779B97F4A7C15L;

    /** The i-th SplitMix64 output for seed. */
    static long h(long seed, long i) {
        long z = seed + (i + 1) * GAMMA;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /** Counts the records a sink subtask sees and sums a number of each; prints at the end. */
    static final class Tally<T> implements Sink<T> {
        interface Amount<T> extends java.io.Serializable {
            long of(T t);
        }

        private final Amount<T> amount;

        Tally(Amount<T> amount) {
            this.amount = amount;
        }

        @Override
        public SinkWriter<T> createWriter(WriterInitContext context) {
            return new SinkWriter<T>() {
                long count, sum;

                @Override
                public void write(T element, Context ctx) {
                    count++;
                    sum += amount.of(element);
                }

                @Override
                public void flush(boolean endOfInput) {}

                @Override
                public void close() {
                    System.out.println(count + "," + sum);
                }
            };
        }
    }

    /** The window job's accumulator: sum and count of the values. */
    static final class SumCount
            implements AggregateFunction<Tuple3<Long, Long, Long>, Tuple2<Long, Long>, Tuple2<Long, Long>> {
        @Override
        public Tuple2<Long, Long> createAccumulator() {
            return Tuple2.of(0L, 0L);
        }

        @Override
        public Tuple2<Long, Long> add(Tuple3<Long, Long, Long> r, Tuple2<Long, Long> acc) {
            return Tuple2.of(acc.f0 + r.f2, acc.f1 + 1);
        }

        @Override
        public Tuple2<Long, Long> getResult(Tuple2<Long, Long> acc) {
            return acc;
        }

        @Override
        public Tuple2<Long, Long> merge(Tuple2<Long, Long> a, Tuple2<Long, Long> b) {
            return Tuple2.of(a.f0 + b.f0, a.f1 + b.f1);
        }
    }

    /** The window job's row: key,window_start,window_end,sum,count. */
    static final class WindowLine
            extends ProcessWindowFunction<Tuple2<Long, Long>, String, Long, TimeWindow> {
        @Override
        public void process(Long key, Context ctx, Iterable<Tuple2<Long, Long>> results,
                Collector<String> out) {
            for (Tuple2<Long, Long> r : results) {
                out.collect(key + "," + ctx.window().getStart() + "," + ctx.window().getEnd()
                        + "," + r.f0 + "," + r.f1);
            }
        }
    }

    /** What the job must give, computed directly from the generator's definition. */
    static String expect(String job, long n) {
        long records = 0, sum = 0;
        if (job.equals("window")) {
            // One row per (key, 10 s window) holding a record; their counts add up to n.
            long windows = (2000 + n / 10) / 10000 + 1;
            boolean[] seen = new boolean[(int) (1000 * windows)];
            for (long i = 0; i < n; i++) {
                long key = Long.remainderUnsigned(h(31, i), 1000);
                long ts = 2000 + i / 10 - Long.remainderUnsigned(h(32, i), 2001);
                int slot = (int) (key * windows + ts / 10000);
                if (!seen[slot]) {
                    seen[slot] = true;
                    records++;
                }
            }
            sum = n;
        } else if (job.startsWith("stateless")) {
            for (long i = 0; i < n; i++) {
                long amount = Long.remainderUnsigned(h(12, i), 10000);
                if (amount >= 2500) {
                    records++;
                    sum += amount;
                }
            }
        } else {
            // Every word's running counts 1..c add up to c(c+1)/2.
            long[] counts = new long[10000];
            for (long i = 0; i < 8 * n; i++) {
                counts[(int) Long.remainderUnsigned(h(21, i), 10000)]++;
            }
            for (long c : counts) {
                records += c;
                sum += c * (c + 1) / 2;
            }
        }
        return records + "," + sum;
    }

    public static void main(String[] args) throws Exception {
        if (args[0].equals("expect")) {
            System.out.println(expect(args[1], Long.parseLong(args[2])));
            return;
        }
        String job = args[0];
        long n = Long.parseLong(args[1]);
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        env.setParallelism(2);
        switch (job) {
            case "stateless-unchained":
                env.disableOperatorChaining();
                // fall through
            case "stateless":
                env.fromSequence(0, n - 1)
                        .map(i -> i + ",user" + Long.remainderUnsigned(h(11, i), 1000) + ","
                                + Long.remainderUnsigned(h(12, i), 10000))
                        .map(line -> {
                            String[] f = line.split(",");
                            return Tuple3.of(Long.parseLong(f[0]), f[1], Long.parseLong(f[2]));
                        })
                        .returns(org.apache.flink.api.common.typeinfo.Types.TUPLE(
                                org.apache.flink.api.common.typeinfo.Types.LONG,
                                org.apache.flink.api.common.typeinfo.Types.STRING,
                                org.apache.flink.api.common.typeinfo.Types.LONG))
                        .filter(o -> o.f2 >= 2500)
                        .sinkTo(new Tally<Tuple3<Long, String, Long>>(o -> o.f2));
                break;
            case "wordcount":
                env.fromSequence(0, n - 1)
                        .map(i -> {
                            StringBuilder line = new StringBuilder();
                            for (int j = 0; j < 8; j++) {
                                if (j > 0) line.append(' ');
                                line.append('w').append(Long.remainderUnsigned(h(21, 8 * i + j), 10000));
                            }
                            return line.toString();
                        })
                        .flatMap((FlatMapFunction<String, String>) (line, out) -> {
                            for (String w : line.split(" ")) out.collect(w);
                        })
                        .returns(String.class)
                        .keyBy(w -> w)
                        .map(new RichMapFunction<String, Tuple2<String, Long>>() {
                            transient ValueState<Long> counts;

                            @Override
                            public void open(OpenContext ctx) {
                                counts = getRuntimeContext().getState(
                                        new ValueStateDescriptor<>("count", Long.class));
                            }

                            @Override
                            public Tuple2<String, Long> map(String w) throws Exception {
                                Long c = counts.value();
                                long next = (c == null ? 0 : c) + 1;
                                counts.update(next);
                                return Tuple2.of(w, next);
                            }
                        })
                        .sinkTo(new Tally<Tuple2<String, Long>>(t -> t.f1));
                break;
            case "window": {
                // fromSequence hands each subtask a range of indices; mapped so that each range
                // becomes a stride (evens, odds), as weir's gen emits them. Any split still
                // gives every index once.
                final long half = (n + 1) / 2;
                env.fromSequence(0, n - 1)
                        .map(j -> {
                            long i = j < half ? 2 * j : 2 * (j - half) + 1;
                            return Tuple3.of(Long.remainderUnsigned(h(31, i), 1000),
                                    2000 + i / 10 - Long.remainderUnsigned(h(32, i), 2001),
                                    Long.remainderUnsigned(h(33, i), 100));
                        })
                        .returns(Types.TUPLE(Types.LONG, Types.LONG, Types.LONG))
                        .assignTimestampsAndWatermarks(WatermarkStrategy
                                .<Tuple3<Long, Long, Long>>forBoundedOutOfOrderness(Duration.ofSeconds(2))
                                .withTimestampAssigner((t, ts) -> t.f1))
                        .keyBy(t -> t.f0)
                        .window(TumblingEventTimeWindows.of(Duration.ofSeconds(10)))
                        .aggregate(new SumCount(), new WindowLine())
                        .sinkTo(new Tally<String>(
                                line -> Long.parseLong(line.substring(line.lastIndexOf(',') + 1))));
                break;
            }
            default:
                throw new IllegalArgumentException("unknown job " + job);
        }
        env.execute(job);
    }
}
