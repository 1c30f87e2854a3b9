package mdmbus.example;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.io.JsonEncoder;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;

/**
 * Produces and reads mdmbus messages with Apache Avro alone: no schema registry, no mdmbus code.
 *
 * <p>An mdmbus message value is Avro single-object encoding: {@code C3 01}, the 8-byte
 * CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form (little-endian), then
 * the record in Avro binary encoding. {@link BinaryMessageEncoder} writes exactly that, and
 * {@link BinaryMessageDecoder} reads it, given one of the self-contained {@code .avsc} files of
 * {@code schemas/avro/}.
 *
 * <pre>
 *   fingerprint FILE.avsc...             the fingerprint of each schema, in wire byte order
 *   encode FILE.avsc RECORD.json OUT.bin  a record in Avro's JSON encoding -> one message
 *   decode FILE.avsc IN.bin               one message -> the record in Avro's JSON encoding
 * </pre>
 */
public final class ContractExample {

    private ContractExample() {
    }

    /** A schema file, parsed on its own: each mdmbus .avsc defines every name it uses. */
    static Schema load(String path) throws IOException {
        return new Schema.Parser().parse(new File(path));
    }

    /** 16 hex digits: the fingerprint's bytes as they follow C3 01 in a message. */
    static String wireFingerprint(Schema schema) {
        long fingerprint = SchemaNormalization.parsingFingerprint64(schema);
        return String.format("%016x", Long.reverseBytes(fingerprint)); // little-endian on the wire
    }

    static void fingerprint(String[] files) throws IOException {
        for (String file : files) {
            System.out.println(wireFingerprint(load(file)) + "  " + file);
        }
    }

    static void encode(String schemaFile, String jsonFile, String outFile) throws IOException {
        Schema schema = load(schemaFile);
        GenericRecord record;
        try (InputStream json = Files.newInputStream(Path.of(jsonFile))) {
            // GenericData.get() has no logical-type conversions: uuids stay strings, timestamps longs.
            record = new GenericDatumReader<GenericRecord>(schema)
                    .read(null, DecoderFactory.get().jsonDecoder(schema, json));
        }
        BinaryMessageEncoder<GenericRecord> encoder =
                new BinaryMessageEncoder<>(GenericData.get(), schema);
        try (OutputStream out = Files.newOutputStream(Path.of(outFile))) {
            encoder.encode(record, out); // C3 01, fingerprint, Avro binary body
        }
    }

    static void decode(String schemaFile, String inFile) throws IOException {
        Schema schema = load(schemaFile);
        // The decoder knows this one writer schema; a message with another fingerprint fails
        // with MissingSchemaException (addSchema registers more, e.g. released versions).
        BinaryMessageDecoder<GenericRecord> decoder =
                new BinaryMessageDecoder<>(GenericData.get(), schema);
        GenericRecord record = decoder.decode(Files.readAllBytes(Path.of(inFile)));

        ByteArrayOutputStream json = new ByteArrayOutputStream();
        JsonEncoder encoder = EncoderFactory.get().jsonEncoder(schema, json);
        new GenericDatumWriter<GenericRecord>(schema).write(record, encoder);
        encoder.flush();
        System.out.println(json.toString(StandardCharsets.UTF_8));
    }

    public static void main(String[] args) throws IOException {
        String command = args.length > 0 ? args[0] : "";
        if (command.equals("fingerprint") && args.length >= 2) {
            fingerprint(java.util.Arrays.copyOfRange(args, 1, args.length));
        } else if (command.equals("encode") && args.length == 4) {
            encode(args[1], args[2], args[3]);
        } else if (command.equals("decode") && args.length == 3) {
            decode(args[1], args[2]);
        } else {
            System.err.println("usage: fingerprint FILE.avsc...\n"
                    + "       encode FILE.avsc RECORD.json OUT.bin\n"
                    + "       decode FILE.avsc IN.bin");
            System.exit(2);
        }
    }
}
