// What replacing a keyed operator's function takes on Apache Flink 2.3: stop with a savepoint and
// submit the job again from it (Flink has no live swap), measured as `weir bench --job swap`
// measures weir (see host/src/bench/swap.rs), so that scripts/flink-bench.sh --job swap can
// print both side by side.
//
//   java -Xmx3g -cp <flink jars>:. Swap KEYS
//
// One MiniCluster (4 slots) runs both jobs, so its start is not counted against Flink. The job:
// a sequence whose first KEYS indices load KEYS keys into a keyed count (a ValueState<Long>),
// then timed records (their value: when they were made, µs) at RATE per second keep hitting
// those keys and reach a sink that notes when each arrived. Checkpoints every second, the heap
// state backend, parallelism 2, the buffer timeout at 5 ms (weir's job flushes every 5 ms). Prints
//   engine=flink job=swap keys=K restart_pause_ms=.. restart_steady_gap_ms=.. \
//     restart_steady_p99_ms=.. restart_request_ms=..
// with the same meanings as weir's line: the longest gap between two records reaching a sink
// subtask from the stop request on (against the same before it), the p99 source-to-sink latency
// before it, and the time from the request to the job running again from its savepoint.

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.flink.api.common.JobID;
import org.apache.flink.api.common.JobStatus;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.configuration.ConfigOptions;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.core.execution.SavepointFormatType;
import org.apache.flink.runtime.jobgraph.JobGraph;
import org.apache.flink.runtime.jobgraph.SavepointRestoreSettings;
import org.apache.flink.runtime.minicluster.MiniCluster;
import org.apache.flink.runtime.minicluster.MiniClusterConfiguration;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;

public class Swap {
    static final long RATE = 20_000;
    static final long STEADY_US = 3_000_000;
    static final long AFTER_US = 2_000_000;

    /** (made, arrived) of every timed record, in µs; the tasks run in this JVM. */
    static final ConcurrentLinkedQueue<long[]> ARRIVED = new ConcurrentLinkedQueue<>();
    /** Bulk records the count has taken. */
    static final AtomicLong LOADED = new AtomicLong();

    static long nowUs() {
        java.time.Instant t = java.time.Instant.now();
        return t.getEpochSecond() * 1_000_000 + t.getNano() / 1_000;
    }

    /** Index -> (key, 0) for the first `keys` indices (the bulk load), then paced timed records. */
    static final class Pace extends RichMapFunction<Long, Tuple2<Long, Long>> {
        final long keys;
        transient long next;

        Pace(long keys) {
            this.keys = keys;
        }

        @Override
        public Tuple2<Long, Long> map(Long i) throws Exception {
            if (i < keys) {
                return Tuple2.of(i, 0L);
            }
            long now = System.nanoTime();
            if (next == 0) next = now;
            next += 1_000_000_000L / (RATE / 2);
            if (next - now > 1_000_000) Thread.sleep((next - now) / 1_000_000);
            long made = nowUs();
            return Tuple2.of(made % keys, made);
        }
    }

    static final class Count extends RichMapFunction<Tuple2<Long, Long>, Tuple2<Long, Long>> {
        transient ValueState<Long> counts;

        @Override
        public void open(OpenContext ctx) {
            counts = getRuntimeContext().getState(new ValueStateDescriptor<>("count", Long.class));
        }

        @Override
        public Tuple2<Long, Long> map(Tuple2<Long, Long> t) throws Exception {
            Long c = counts.value();
            counts.update((c == null ? 0 : c) + 1);
            if (t.f1 == 0) LOADED.incrementAndGet();
            return t;
        }
    }

    static final class Trace implements Sink<Tuple2<Long, Long>> {
        @Override
        public SinkWriter<Tuple2<Long, Long>> createWriter(WriterInitContext context) {
            final long subtask = context.getTaskInfo().getIndexOfThisSubtask();
            return new SinkWriter<Tuple2<Long, Long>>() {
                @Override
                public void write(Tuple2<Long, Long> t, Context c) {
                    ARRIVED.add(new long[] {t.f1, nowUs(), subtask});
                }

                @Override
                public void flush(boolean endOfInput) {}

                @Override
                public void close() {}
            };
        }
    }

    static JobGraph job(long keys, String checkpoints) {
        // Checkpoints in files (as weir's): the default keeps them in the JobManager's memory,
        // which refuses a state of 1 M keys.
        Configuration conf = new Configuration();
        conf.set(ConfigOptions.key("execution.checkpointing.storage").stringType().noDefaultValue(), "filesystem");
        conf.set(ConfigOptions.key("execution.checkpointing.dir").stringType().noDefaultValue(), checkpoints);
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(conf);
        env.setParallelism(2);
        env.enableCheckpointing(1000);
        // As weir's job (flush_ms = 5); Flink's default is 100 ms.
        env.setBufferTimeout(5);
        env.fromSequence(0, Long.MAX_VALUE - 1)
                .map(new Pace(keys))
                .keyBy(t -> t.f0)
                .map(new Count())
                .uid("count")
                .filter(t -> t.f1 > 0)
                .sinkTo(new Trace());
        return env.getStreamGraph().getJobGraph();
    }

    static long longestGap(List<long[]> all, long from, long to) {
        long gap = 0;
        for (long subtask = 0; subtask < 2; subtask++) {
            long last = -1;
            for (long[] r : all) {
                if (r[2] != subtask || r[1] < from || r[1] >= to) continue;
                if (last >= 0) gap = Math.max(gap, r[1] - last);
                last = r[1];
            }
        }
        return gap;
    }

    static long p99(List<long[]> all, long from, long to) {
        List<Long> l = new ArrayList<>();
        for (long[] r : all) if (r[0] >= from && r[0] < to) l.add(r[1] - r[0]);
        if (l.isEmpty()) return -1;
        l.sort(null);
        return l.get((int) Math.max(0, Math.ceil(l.size() * 0.99) - 1));
    }

    static void waitFor(MiniCluster mc, JobID id, JobStatus want) throws Exception {
        while (mc.getJobStatus(id).get() != want) Thread.sleep(2);
    }

    public static void main(String[] args) throws Exception {
        long keys = Long.parseLong(args[0]);
        java.nio.file.Path scratch = java.nio.file.Files.createTempDirectory("flink-swap");
        String savepoints = scratch.resolve("savepoints").toUri().toString();
        String checkpoints = scratch.resolve("checkpoints").toUri().toString();
        MiniCluster mc = new MiniCluster(new MiniClusterConfiguration.Builder()
                .setConfiguration(new Configuration())
                .setNumTaskManagers(1)
                .setNumSlotsPerTaskManager(4)
                .build());
        mc.start();
        JobID first = mc.submitJob(job(keys, checkpoints)).get().getJobID();
        while (LOADED.get() < keys) Thread.sleep(5);
        Thread.sleep(STEADY_US / 1000);
        long asked = nowUs();
        String path = mc.stopWithSavepoint(first, savepoints, false, SavepointFormatType.CANONICAL).get();
        JobGraph again = job(keys, checkpoints);
        again.setSavepointRestoreSettings(SavepointRestoreSettings.forPath(path));
        JobID second = mc.submitJob(again).get().getJobID();
        waitFor(mc, second, JobStatus.RUNNING);
        int before = ARRIVED.size();
        while (ARRIVED.size() == before) Thread.sleep(1);
        long running = nowUs();
        Thread.sleep(AFTER_US / 1000);
        long ended = nowUs();
        mc.cancelJob(second).get();
        List<long[]> all = new ArrayList<>(ARRIVED);
        all.sort((a, b) -> Long.compare(a[1], b[1]));
        System.out.printf(
                "engine=flink job=swap keys=%d restart_pause_ms=%.1f restart_steady_gap_ms=%.1f restart_steady_p99_ms=%.1f restart_request_ms=%.0f%n",
                keys,
                longestGap(all, asked, ended) / 1e3,
                longestGap(all, asked - STEADY_US, asked) / 1e3,
                p99(all, asked - STEADY_US, asked) / 1e3,
                (running - asked) / 1e3);
        mc.close();
        org.apache.flink.util.FileUtils.deleteDirectory(scratch.toFile());
        System.exit(0);
    }
}
