// The reference workloads of WORKLOADS.md (beside the repository) as Apache Flink 2.3 DataStream
// jobs, so that Flink can be measured on the same machine in the same hour as weir (see
// scripts/flink-bench.sh, which builds and runs this file against Flink's own jars).
//
//   java -cp <flink jars>:. Reference stateless|stateless-unchained|wordcount N
//   java -cp <flink jars>:. Reference expect JOB N
//
// Each job runs in a local MiniCluster at parallelism 2 and prints one line per sink subtask:
// "count,sum". Records are generated from their index exactly as weir's `gen` source does (the
// index range is split into ranges rather than strides; the records are the same). `expect`
// computes the job's result with a plain loop, without Flink, in a run that is not timed.

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
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
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

    /** What the job must give, computed directly from the generator's definition. */
    static String expect(String job, long n) {
        long records = 0, sum = 0;
        if (job.startsWith("stateless")) {
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
            default:
                throw new IllegalArgumentException("unknown job " + job);
        }
        env.execute(job);
    }
}
